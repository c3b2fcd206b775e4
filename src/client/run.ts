/**
 * One run of the diagnostic client: parse, open the device, connect, send, print. Returns
 * the exit status; only main.ts ends the process.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { getSystemErrorMap } from 'node:util';
import { PR_HELPER_FEATURE_CLEANUP } from '../protocol/constants.js';
import { PR_OUT_BASIC_PARAMETER_LENGTH, cleanupCdb, prInCdb, prOutCdb, prOutParameterList } from '../scsi/pr-commands.js';
import { SyscallError } from '../sys/errors.js';
import { parseClientArgs, type ClientOptions } from './args.js';
import { EXIT_FAILURE, type CommandSpec } from './commands.js';
import { HelperConnection } from './connection.js';
import { CleanupNotAnnouncedError, DeviceError, HelperClosedError, HelperProtocolError, HelperTimeoutError, HelperUnreachableError } from './errors.js';
import { clientUsageText, clientVersionText } from './help.js';
import { commandResult, featuresResult, hex32, type CommandReport } from './result.js';
import { commandText, featuresText } from './text.js';

export interface ClientIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

type DeviceCommand = Exclude<CommandSpec, { kind: 'features' }>;

/** LU_SCOPE: the only scope SPC-4 still defines. */
const LU_SCOPE = 0;

const OPEN_ERRORS: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EROFS: 'Read-only file system',
  ENXIO: 'No such device or address',
  ENODEV: 'No such device',
  ENOMEDIUM: 'No medium found',
  EBUSY: 'Device or resource busy',
  ETXTBSY: 'Text file busy',
  EISDIR: 'Is a directory',
};

function isErrnoException(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).code === 'string';
}

/** Opens DEVICE as sg3_utils does (O_NONBLOCK: no wait for media); close-on-exec by Node. */
function openDevice(path: string, readWrite: boolean): number {
  try {
    return openSync(path, (readWrite ? constants.O_RDWR : constants.O_RDONLY) | constants.O_NONBLOCK);
  } catch (error) {
    if (!isErrnoException(error)) throw error;
    const code = error.code ?? '';
    const text = OPEN_ERRORS[code] ?? getSystemErrorMap().get(error.errno ?? 0)?.[1] ?? error.message;
    const hint = readWrite && (code === 'EROFS' || code === 'EACCES' || code === 'EPERM')
      ? ' (PR OUT needs a writable descriptor; --readonly sends it on a read-only one, which the helper refuses)'
      : '';
    throw new DeviceError(`Cannot open device '${path}' ${readWrite ? 'read-write' : 'read-only'}: ${text}${hint}`, { cause: error });
  }
}

function request(command: DeviceCommand, o: ClientOptions): Pick<CommandReport, 'cdb' | 'parameters' | 'allocationLength'> & { list: Uint8Array } {
  switch (command.kind) {
    case 'pr-in':
      return { cdb: prInCdb(command.serviceAction, o.allocationLength), parameters: null, allocationLength: o.allocationLength, list: new Uint8Array(0) };
    case 'pr-out':
      return {
        cdb: prOutCdb({ serviceAction: command.serviceAction, scope: LU_SCOPE, type: o.type ?? 0, parameterListLength: PR_OUT_BASIC_PARAMETER_LENGTH }),
        parameters: { key: o.key, serviceActionKey: o.serviceActionKey, scope: LU_SCOPE, type: o.type, aptpl: o.aptpl, allTargetPorts: o.allTargetPorts },
        allocationLength: null,
        list: prOutParameterList({ key: o.key, serviceActionKey: o.serviceActionKey, aptpl: o.aptpl, allTargetPorts: o.allTargetPorts }),
      };
    case 'cleanup':
      return { cdb: cleanupCdb(), parameters: null, allocationLength: null, list: new Uint8Array(0) };
  }
}

async function runDeviceCommand(command: DeviceCommand, device: string, o: ClientOptions, io: ClientIo): Promise<number> {
  const readWrite = command.kind !== 'pr-in' && !o.readOnly;
  const req = request(command, o);
  const deviceFd = openDevice(device, readWrite);
  let connection: HelperConnection | null = null;
  try {
    connection = await HelperConnection.open(o.socketPath, o.timeoutMs);
    if (command.kind === 'cleanup' && (connection.features & PR_HELPER_FEATURE_CLEANUP) === 0) {
      throw new CleanupNotAnnouncedError(o.socketPath, hex32(connection.features));
    }
    const outcome = await connection.execute({
      cdb: req.cdb, deviceFd, parameters: req.list, maxData: command.kind === 'pr-in' ? o.allocationLength : 0,
    });
    const result = commandResult({
      command, socket: o.socketPath, features: connection.features, device,
      access: readWrite ? 'read-write' : 'read-only', cdb: req.cdb, parameters: req.parameters,
      allocationLength: req.allocationLength, outcome,
    });
    io.stdout(o.json ? `${JSON.stringify(result, null, 2)}\n` : commandText(result));
    return result.exitStatus;
  } finally {
    connection?.close();
    closeSync(deviceFd);
  }
}

/** Runs the client on `args` (without node and script) and returns the exit status. */
export async function runClient(args: readonly string[], program: string, io: ClientIo): Promise<number> {
  const parsed = parseClientArgs(args);
  switch (parsed.kind) {
    case 'help':
      io.stdout(clientUsageText(program));
      return 0;
    case 'version':
      io.stdout(clientVersionText(program));
      return 0;
    case 'usage-error':
      io.stderr(`${program}: ${parsed.message}\nTry '${program} --help' for more information.\n`);
      return EXIT_FAILURE;
    case 'run':
      break;
  }
  const { command, device, options } = parsed;
  try {
    if (command.kind === 'features') {
      const connection = await HelperConnection.open(options.socketPath, options.timeoutMs);
      const result = featuresResult(options.socketPath, connection.features, connection.reply);
      connection.close();
      io.stdout(options.json ? `${JSON.stringify(result, null, 2)}\n` : featuresText(result));
      return 0;
    }
    return await runDeviceCommand(command, device ?? '', options, io);
  } catch (error) {
    if (error instanceof HelperClosedError) {
      // The helper closes without a word on a refused peer (--allow-uid) or a request it
      // cannot frame; only its log tells which.
      io.stderr(`${program}: ${error.message}; its log says why\n`);
      return EXIT_FAILURE;
    }
    const known = error instanceof HelperUnreachableError || error instanceof HelperTimeoutError
      || error instanceof HelperProtocolError || error instanceof DeviceError || error instanceof CleanupNotAnnouncedError
      || error instanceof SyscallError;
    if (!known) throw error;
    io.stderr(`${program}: ${error.message}\n`);
    return EXIT_FAILURE;
  }
}
