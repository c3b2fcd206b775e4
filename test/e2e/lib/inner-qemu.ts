/**
 * A nested QEMU whose guest can be driven over its serial console, and a minimal QMP client:
 * what test/e2e/migration.test.ts needs to live-migrate a guest between two QEMUs and keep
 * talking to it afterwards.
 *
 * The guest is the inner initramfs of vm/mk-inner-initrd.sh booted with `inner_serve`: its
 * /init reads "CMD ID SHELL-TEXT" lines from ttyS0 and frames each command's output with
 * "INNER-BEGIN ID" / "INNER-END ID rc=N". QEMU's `-serial stdio` connects ttyS0 to this
 * process's pipes, so after a migration the same guest shell keeps reading, now from the
 * destination QEMU's stdin.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createConnection, type Socket } from 'node:net';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { log } from './env.js';

export interface InnerQemuOptions {
  /** a short name for the logs ("src", "dst", ...) */
  name: string;
  qemu: string;
  /** -L directory (firmware, pvh.bin), or undefined for the binary's default */
  firmware?: string;
  machine: string;
  memMb: number;
  kernel: string;
  initrd: string;
  /** the host device the scsi-block disk is backed by (one I_T nexus) */
  disk: string;
  /** the pr-manager-helper socket */
  prManager: string;
  /** e.g. "unix:/tmp/x.sock": start as a migration destination */
  incoming?: string;
  /** extra -device scsi-block properties, e.g. "migrate-pr=on" */
  scsiBlockProps?: string;
  /** replaces the pr-manager + blockdev + scsi-block arguments (a trial without SCSI) */
  diskArgs?: string[];
}

let nextCommandId = 1;

export class Qmp {
  readonly #sock: Socket;
  #buf = '';
  readonly #waiting: ((msg: Record<string, unknown>) => void)[] = [];
  readonly events: Record<string, unknown>[] = [];

  private constructor(sock: Socket) {
    this.#sock = sock;
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.#buf += d;
      let nl: number;
      while ((nl = this.#buf.indexOf('\n')) >= 0) {
        const line = this.#buf.slice(0, nl).trim();
        this.#buf = this.#buf.slice(nl + 1);
        if (line.length === 0) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('event' in msg) this.events.push(msg);
        else this.#waiting.shift()?.(msg);
      }
    });
    sock.on('error', () => { /* the process went away: pending commands are failed by close */ });
    sock.on('close', () => {
      for (const w of this.#waiting.splice(0)) w({ error: { class: 'Closed', desc: 'QMP connection closed' } });
    });
  }

  static async connect(path: string, timeoutMs = 30_000): Promise<Qmp> {
    const t0 = performance.now();
    for (;;) {
      try {
        const sock = await new Promise<Socket>((res, rej) => {
          const s = createConnection(path);
          s.once('connect', () => res(s));
          s.once('error', rej);
        });
        const qmp = new Qmp(sock);
        await new Promise<Record<string, unknown>>((res) => qmp.#waiting.push(res)); // greeting
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (e) {
        if (performance.now() - t0 > timeoutMs) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Runs a QMP command; resolves with its "return", rejects with its "error". */
  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const reply = new Promise<Record<string, unknown>>((res) => this.#waiting.push(res));
    this.#sock.write(`${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`);
    const msg = await reply;
    if ('error' in msg) throw new Error(`QMP ${command}: ${JSON.stringify(msg['error'])}`);
    return msg['return'];
  }

  close(): void {
    this.#sock.destroy();
  }
}

export class InnerQemu {
  readonly child: ChildProcessWithoutNullStreams;
  readonly qmpPath: string;
  readonly exited: Promise<number | string>;
  exitCode: number | string | null = null;
  /** the guest's serial output (CRs removed) and QEMU's own stderr */
  serial = '';
  stderr = '';
  #qmp: Qmp | null = null;
  #pending = '';
  readonly #listeners = new Set<() => void>();

  constructor(readonly opts: InnerQemuOptions) {
    this.qmpPath = `/tmp/prh-e2e-qmp-${opts.name}.sock`;
    rmSync(this.qmpPath, { force: true });
    const khz = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
    const append = ['console=ttyS0', 'quiet', 'loglevel=3', 'panic=-1', 'mitigations=off', 'tsc=reliable', 'inner_serve'];
    if (khz !== undefined) append.push(`tsc_early_khz=${Math.round(Number(khz) * 1000)}`);
    const args = [
      ...(opts.firmware !== undefined ? ['-L', opts.firmware] : []),
      '-M', opts.machine, '-accel', 'tcg', '-cpu', 'max', '-m', String(opts.memMb), '-smp', '1',
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-kernel', opts.kernel, '-initrd', opts.initrd, '-append', append.join(' '),
      '-serial', 'stdio',
      '-qmp', `unix:${this.qmpPath},server=on,wait=off`,
      ...(opts.diskArgs ?? [
        '-object', `pr-manager-helper,id=pr0,path=${opts.prManager}`,
        '-blockdev', `driver=host_device,node-name=d0,filename=${opts.disk},pr-manager=pr0`,
        '-device', 'virtio-scsi-pci,id=scsi0',
        '-device', `scsi-block,bus=scsi0.0,drive=d0,id=disk0${opts.scsiBlockProps ? `,${opts.scsiBlockProps}` : ''}`,
      ]),
      ...(opts.incoming !== undefined ? ['-incoming', opts.incoming] : []),
    ];
    log(`${opts.name}: ${opts.qemu} ${args.join(' ')}`);
    this.child = spawn(opts.qemu, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => this.#onSerial(d));
    this.child.stderr.setEncoding('utf8').on('data', (d: string) => {
      this.stderr += d;
      for (const l of d.split('\n')) if (l.trim().length > 0) log(`${opts.name} qemu stderr: ${l}`);
      this.#notify();
    });
    this.child.stdin.on('error', () => { /* EPIPE after the process died */ });
    this.exited = new Promise((res) => this.child.on('exit', (c, s) => {
      this.exitCode = c ?? s ?? -1;
      log(`${opts.name}: QEMU exited ${this.exitCode}`);
      this.#notify();
      res(this.exitCode);
    }));
  }

  #onSerial(d: string): void {
    const text = d.replace(/\r/g, '');
    this.serial += text;
    this.#pending += text;
    let nl: number;
    while ((nl = this.#pending.indexOf('\n')) >= 0) {
      log(`${this.opts.name} guest: ${this.#pending.slice(0, nl)}`);
      this.#pending = this.#pending.slice(nl + 1);
    }
    this.#notify();
  }

  #notify(): void {
    for (const l of [...this.#listeners]) l();
  }

  /** Resolves when `cond` holds (checked on every output and at exit); rejects on timeout. */
  async until<T>(cond: () => T | null | undefined, what: string, timeoutMs: number): Promise<T> {
    const now = cond();
    if (now !== null && now !== undefined) return now;
    return new Promise<T>((res, rej) => {
      const check = (): void => {
        const v = cond();
        if (v !== null && v !== undefined) { done(); res(v); return; }
        if (this.exitCode !== null) { done(); rej(new Error(`${this.opts.name}: QEMU exited ${this.exitCode} while waiting for ${what}`)); }
      };
      const timer = setTimeout(() => { done(); rej(new Error(`${this.opts.name}: timed out after ${timeoutMs} ms waiting for ${what}`)); }, timeoutMs);
      const done = (): void => { clearTimeout(timer); this.#listeners.delete(check); };
      this.#listeners.add(check);
      check();
    });
  }

  /** Waits for the guest's command loop (INNER-READY). */
  async ready(timeoutMs: number): Promise<void> {
    await this.until(() => (/INNER-READY/.test(this.serial) ? true : null), 'the inner guest to boot (INNER-READY)', timeoutMs);
  }

  /**
   * Runs one shell command line in the guest (whichever QEMU it runs on now must be this
   * one) and resolves with its exit status and output.
   */
  async run(cmd: string, timeoutMs = 60_000): Promise<{ rc: number; output: string }> {
    const id = nextCommandId++;
    const from = this.serial.length;
    this.child.stdin.write(`CMD ${id} ${cmd}\n`);
    const re = new RegExp(`INNER-BEGIN ${id}\\n([\\s\\S]*?)INNER-END ${id} rc=(\\d+)\\n`);
    const m = await this.until(() => re.exec(this.serial.slice(from)), `guest command ${id} (${cmd})`, timeoutMs);
    return { rc: Number(m[2]), output: m[1] ?? '' };
  }

  async qmp(): Promise<Qmp> {
    this.#qmp ??= await Qmp.connect(this.qmpPath);
    return this.#qmp;
  }

  async status(): Promise<string> {
    const r = (await (await this.qmp()).execute('query-status')) as { status: string };
    return r.status;
  }

  /** Ends the process: QMP quit, SIGKILL if it is still there after `graceMs`. */
  async stop(graceMs = 10_000): Promise<number | string> {
    if (this.exitCode === null) {
      const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      try { await (await this.qmp()).execute('quit'); } catch { /* already going */ }
      await this.exited;
      clearTimeout(t);
    }
    this.#qmp?.close();
    rmSync(this.qmpPath, { force: true });
    return this.exitCode ?? -1;
  }

  kill(): void {
    if (this.exitCode === null) this.child.kill('SIGKILL');
  }
}

export interface MigrationResult {
  status: string;
  seconds: number;
  info: Record<string, unknown>;
}

/**
 * QMP `migrate` on the source to `uri` (the destination must already listen there), then
 * query-migrate until completed, failed or cancelled.
 */
export async function migrate(src: InnerQemu, uri: string, timeoutMs = 120_000, capabilities: Record<string, boolean> = {}): Promise<MigrationResult> {
  const qmp = await src.qmp();
  const caps = Object.entries(capabilities).map(([capability, state]) => ({ capability, state }));
  if (caps.length > 0) await qmp.execute('migrate-set-capabilities', { capabilities: caps });
  const t0 = performance.now();
  await qmp.execute('migrate', { uri });
  for (;;) {
    const info = (await qmp.execute('query-migrate')) as Record<string, unknown>;
    const status = String(info['status']);
    if (status === 'completed' || status === 'failed' || status === 'cancelled') {
      return { status, seconds: (performance.now() - t0) / 1000, info };
    }
    if (performance.now() - t0 > timeoutMs) throw new Error(`migration still '${status}' after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits for a migration destination's socket to exist (QEMU listens on it). */
export async function waitForPath(path: string, timeoutMs = 30_000): Promise<void> {
  const t0 = performance.now();
  while (!existsSync(path)) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`${path} did not appear within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
