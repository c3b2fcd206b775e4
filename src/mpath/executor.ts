/**
 * PR commands on dm-multipath devices (docs/protocol.md §5), beside the plain SG_IO path.
 *
 * A PR command sent by SG_IO to /dev/mapper/mpathX reaches ONE path, so a REGISTER would
 * register one I_T nexus only and break fencing. On a multipath fd the command therefore
 * goes through libmpathpersist, which runs it on every path and keeps multipathd's
 * reservation key up to date. Deviations from the reference:
 * - detection reads /sys/dev/block/M:m/dm/uuid ("mpath-" prefix, set by multipathd) and
 *   needs no DM ioctl; a failure to tell means "not multipath", never the end of the
 *   daemon (docs/protocol.md §9 items 10 and 19);
 * - the library runs on its own thread, never blocking other connections (docs/protocol.md §9 item 11);
 * - without the library a multipath fd is refused (INVALID COMMAND OPERATION CODE), never
 *   sent down a single path;
 * - a multipathd failure during CLEANUP answers LUN COMMUNICATION FAILURE instead of
 *   closing the connection (docs/protocol.md §9 item 12), and the reason is logged;
 * - READ FULL STATUS goes to the library too (QEMU refuses it). When the library's answer
 *   cannot be turned back into faithful SPC data (full-status.ts decodeLibraryFullStatus), the
 *   reference's INVALID FIELD IN CDB is sent and the reason logged. REGISTER AND MOVE is
 *   refused as in QEMU, and the reason (the library cannot do it) logged.
 */
import { Opcode, type ScsiOutcome } from '../scsi/constants.js';
import { Sense, checkCondition } from '../scsi/sense.js';
import { interpretSgIo } from '../scsi/sgio-status.js';
import {
  cleanupUnregisterRequest, mapLibraryResult, mpathOutcome, parsePrInRequest, parsePrOutParameters, prInResponseData,
} from './translation.js';
import { PR_HELPER_CLEANUP } from '../protocol/constants.js';
import type { PrRequest } from '../protocol/session.js';
import { multipathMapOf, type BlockDevice } from './detect.js';
import type { MpathLibrary } from './library.js';
import { MPATH_PRIN_RCAP_SA, MPATH_PR_SUCCESS } from './abi.js';
import { formatVersion, needsPathRepair, pathRepair } from './path-repair.js';
import type { PrOutArguments } from './types.js';
import { refuseReadOnly, type ScsiExecutor } from '../exec/executor.js';
import type { SgIoRunner } from '../exec/sgio-executor.js';

/** multipathd's reply timeout for CLEANUP's commands, as QEMU uses (docs/protocol.md §5.6). */
const MULTIPATHD_TIMEOUT_MS = 60_000;
const TEST_UNIT_READY = new Uint8Array([Opcode.TEST_UNIT_READY, 0, 0, 0, 0, 0]);

export interface MultipathOptions {
  /** QEMU's noisy/verbose, passed to the library as its log level (docs/protocol.md §1.3). */
  noisy: number;
  verbose: number;
  timeoutMs: number;
  /** Logs why a multipath request failed beyond its SCSI outcome. */
  log: (message: string) => void;
  /** Logs a correction made on the guest's behalf (path-repair.ts). */
  warn: (message: string) => void;
}

export class MultipathExecutor implements ScsiExecutor {
  readonly #plain: ScsiExecutor;
  readonly #runner: SgIoRunner;
  readonly #openLibrary: () => Promise<MpathLibrary | null>;
  #library: Promise<MpathLibrary | null> | null = null;
  readonly #options: MultipathOptions;
  #executing = 0;

  /**
   * `openLibrary` starts libmpathpersist's thread and resolves once the library is
   * initialised, or to null when it is unavailable (multipath fds are then refused). It is
   * called once, on the first multipath request: a helper that never sees a multipath
   * device never pays for the library's thread (about 12 MB and a Node isolate's start).
   */
  constructor(plain: ScsiExecutor, runner: SgIoRunner, openLibrary: () => Promise<MpathLibrary | null>, options: MultipathOptions) {
    this.#plain = plain;
    this.#runner = runner;
    this.#options = options;
    this.#openLibrary = openLibrary;
  }

  get inFlight(): number {
    return this.#plain.inFlight + this.#executing;
  }

  async execute(request: PrRequest): Promise<ScsiOutcome> {
    const device = multipathMapOf(request.fd);
    if (device === null) return this.#plain.execute(request);
    this.#executing++;
    try {
      return await this.#executeOnMap(request, device);
    } finally {
      // The fd is ours (see ScsiExecutor); released before the request settles.
      await this.#runner.release(request.fd);
      this.#executing--;
    }
  }

  async #executeOnMap(request: PrRequest, device: BlockDevice): Promise<ScsiOutcome> {
    this.#library ??= this.#openLibrary();
    const library = await this.#library;
    if (library === null) {
      // Never down one path: a registration on one path only breaks fencing.
      this.#options.log(`Refusing a PR command on multipath device ${device.major}:${device.minor}: libmpathpersist is not available`);
      return checkCondition(Sense.INVALID_OPCODE);
    }
    switch (request.opcode) {
      case Opcode.PERSISTENT_RESERVE_IN:
        return await this.#prIn(library, device, request);
      case Opcode.PERSISTENT_RESERVE_OUT:
        return refuseReadOnly(request.fd) ?? await this.#prOut(library, device, request.fd, request.cdb, request.parameters);
      case PR_HELPER_CLEANUP:
        return refuseReadOnly(request.fd) ?? await this.#cleanup(library, request.fd, device);
      default:
        throw new Error(`Cannot execute operation code ${request.opcode}: not validated`);
    }
  }

  /** The library dropped the device's sense: ask the device again with TEST UNIT READY. */
  async #probe(fd: number): Promise<{ status: number; sense: Uint8Array }> {
    const result = await this.#runner.run(fd, {
      cdb: TEST_UNIT_READY, direction: 'none', transferLength: 0, timeoutMs: this.#options.timeoutMs,
    });
    return interpretSgIo(result);
  }

  async #answer(fd: number, code: number, data?: Uint8Array): Promise<ScsiOutcome> {
    const verdict = mapLibraryResult(code);
    const probe = verdict.kind === 'check' && verdict.probeWithTestUnitReady ? await this.#probe(fd) : null;
    return mpathOutcome(verdict, probe, data);
  }

  async #prIn(library: MpathLibrary, device: BlockDevice, request: PrRequest): Promise<ScsiOutcome> {
    const parsed = parsePrInRequest(request.cdb);
    if (parsed.kind === 'done') return parsed.outcome;
    const { code, response } = await library.reserveIn(request.fd, parsed.sa, this.#options.noisy, this.#options.verbose);
    if (mapLibraryResult(code).kind !== 'good' || response === null) return this.#answer(request.fd, code);
    if (response.kind === 'unusable') {
      // What the reference answers for READ FULL STATUS; nothing half-true reaches the guest.
      this.#options.log(`READ FULL STATUS on multipath device ${device.major}:${device.minor} refused: ${response.reason}`);
      return checkCondition(Sense.INVALID_FIELD);
    }
    return this.#answer(request.fd, code, prInResponseData(parsed.sa, parsed.allocationLength, response));
  }

  async #prOut(library: MpathLibrary, device: BlockDevice, fd: number, cdb: Uint8Array, parameters: Uint8Array): Promise<ScsiOutcome> {
    const parsed = parsePrOutParameters(cdb, parameters);
    if (parsed.kind === 'done') {
      if (parsed.reason !== undefined) {
        this.#options.log(`PR OUT on multipath device ${device.major}:${device.minor} refused: ${parsed.reason}`);
      }
      return parsed.outcome;
    }
    const { sa, scope, type, descriptor } = parsed;
    const call = { sa, scope, type, descriptor };
    const code = await library.reserveOut(fd, call, this.#options.noisy, this.#options.verbose);
    if (code === MPATH_PR_SUCCESS && needsPathRepair(library.version, call)) await this.#repairPaths(library, device, fd, call);
    return this.#answer(fd, code);
  }

  /**
   * After a PREEMPT with the caller's own key, an older library leaves the map's other
   * paths unregistered (path-repair.ts): register them again. The PREEMPT's answer stays
   * what it was; whether the repair worked is logged.
   */
  async #repairPaths(library: MpathLibrary, device: BlockDevice, fd: number, call: PrOutArguments): Promise<void> {
    const { noisy, verbose } = this.#options;
    const what = `PREEMPT with its own key on multipath device ${device.major}:${device.minor}: `
      + `libmpathpersist ${formatVersion(library.version)} (before 0.14) leaves the map's other paths unregistered`;
    const { code, response } = await library.reserveIn(fd, MPATH_PRIN_RCAP_SA, noisy, verbose);
    if (code !== MPATH_PR_SUCCESS || response?.kind !== 'capabilities') {
      this.#options.warn(`warning: ${what}; not registered again: REPORT CAPABILITIES failed (library code ${code})`);
      return;
    }
    const repaired = await library.reserveOut(fd, pathRepair(call, response), noisy, verbose);
    this.#options.warn(repaired === MPATH_PR_SUCCESS
      ? `warning: ${what}; registered every path again (REGISTER AND IGNORE EXISTING KEY, same key)`
      : `warning: ${what}; registering them again failed (library code ${repaired})`);
  }

  /**
   * CLEANUP (docs/protocol.md §5.6): make multipathd forget this host's key, so that it neither
   * re-registers it on reinstated paths nor preempts the migration destination, then
   * unregister on every path.
   */
  async #cleanup(library: MpathLibrary, fd: number, device: BlockDevice): Promise<ScsiOutcome> {
    const map = `dm-${device.minor}`;
    const failure = await library.multipathd([`unsetprkey map ${map}`, `unsetprstatus map ${map}`], MULTIPATHD_TIMEOUT_MS);
    if (failure !== null) {
      this.#options.log(`CLEANUP on ${map}: ${failure}`);
      return checkCondition(Sense.LUN_COMM_FAILURE);
    }
    const unregister = cleanupUnregisterRequest();
    return this.#prOut(library, device, fd, unregister.cdb, unregister.params);
  }

  close(): void {
    this.#plain.close();
    void this.#library?.then((library) => library?.close());
  }
}
