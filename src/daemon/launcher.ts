/**
 * -d without the reference's lifecycle bug (docs/protocol.md §1.5 step 8, §9 item 16). Node cannot
 * fork, so the launching process starts the daemon as a new process in its own session
 * (setsid, stdin/stdout on /dev/null, like daemon(3)), relays the daemon's start-up errors,
 * and exits only when the daemon reports that it accepts connections (0) or has failed
 * (its message and 1). The reference exits 0 before it writes the pid file or drops
 * privileges, so those failures go unseen.
 */
import type { StdioOptions } from 'node:child_process';
import { childProcess } from '../util/builtins.js';

/** What the daemon writes on that pipe once it serves. */
export const READY_MESSAGE = 'READY\n';

export interface DaemonLaunch {
  execPath: string;
  /** Node options, script and the helper's own arguments. */
  args: readonly string[];
  /** The daemon's environment, given the fd of its readiness pipe (src/daemon/handoff.ts). */
  envFor: (readyFd: number) => NodeJS.ProcessEnv;
  /** Inherited descriptors to pass on under the same numbers (libvirt-style fds). */
  inheritedFds: readonly number[];
  /** Called with the daemon's stderr output until it is ready. */
  relay: (chunk: Buffer) => void;
}

export interface LaunchResult {
  ready: boolean;
  pid: number | null;
  /** The daemon's exit status or signal when it ended before becoming ready. */
  exit: string | null;
}

export function launchDaemon(launch: DaemonLaunch): Promise<LaunchResult> {
  const readyFd = Math.max(3, ...launch.inheritedFds.map((fd) => fd + 1));
  const stdio: StdioOptions = Array.from({ length: readyFd + 1 }, () => 'ignore' as const);
  stdio[2] = 'pipe';
  stdio[readyFd] = 'pipe';
  for (const fd of launch.inheritedFds) stdio[fd] = fd;
  const child = childProcess().spawn(launch.execPath, launch.args, {
    detached: true,
    stdio,
    env: launch.envFor(readyFd),
  });
  return new Promise((resolve) => {
    let ready = false;
    let settled = false;
    let received = '';
    const finish = (result: LaunchResult): void => {
      if (settled) return;
      settled = true;
      child.stderr?.removeAllListeners('data');
      child.stderr?.destroy();
      const pipe = child.stdio[readyFd];
      if (pipe && 'destroy' in pipe) pipe.destroy();
      child.removeAllListeners('exit');
      child.unref();
      resolve(result);
    };
    child.stderr?.on('data', (chunk: Buffer) => launch.relay(chunk));
    const readyPipe = child.stdio[readyFd];
    if (readyPipe && 'on' in readyPipe) {
      readyPipe.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1');
        if (!ready && received.includes(READY_MESSAGE)) {
          ready = true;
          finish({ ready: true, pid: child.pid ?? null, exit: null });
        }
      });
      readyPipe.on('error', () => undefined);
    }
    child.on('error', (error) => finish({ ready: false, pid: null, exit: error.message }));
    child.on('exit', (code, signal) => {
      // Let the stderr pipe drain first, so the daemon's last words are relayed.
      const report = (): void => finish({ ready: false, pid: child.pid ?? null, exit: signal ?? `status ${code}` });
      if (child.stderr && !child.stderr.readableEnded) child.stderr.once('close', report);
      else report();
    });
  });
}
