/**
 * A monotonic clock in milliseconds, as `performance.now()` (from an arbitrary origin), for
 * the main thread's modules: Node loads the global `performance` (perf_hooks and about ten
 * internal modules, 0.8 MB of RSS, issue 16) on first use; `process.hrtime` it has loaded.
 */
export function monotonicMs(): number {
  const [seconds, nanoseconds] = process.hrtime();
  return seconds * 1e3 + nanoseconds / 1e6;
}
