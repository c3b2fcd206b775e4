/**
 * A monotonic clock in milliseconds, as `performance.now()` (from an arbitrary origin), for
 * the main thread's modules: Node loads the global `performance` (perf_hooks and about ten
 * internal modules, 0.8 MB of RSS, issue 16) on first use; `process.hrtime` it has loaded.
 */
export function monotonicMs(): number {
  // The bigint form allocates one BigInt; process.hrtime() two arrays (a request reads it twice).
  return Number(process.hrtime.bigint()) / 1e6;
}
