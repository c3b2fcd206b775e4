/** Order statistics of timing samples, for the benchmarks and the e2e latency checks. */

function sorted(samples: readonly number[]): number[] {
  return [...samples].sort((a, b) => a - b);
}

/** The middle sample, or the mean of the two middle ones for an even count; NaN for none. */
export function median(samples: readonly number[]): number {
  const s = sorted(samples);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2;
}

/**
 * The sample at rank floor(p × n) in ascending order (p from 0 to 1; 1 gives the largest):
 * always one of the samples, never an interpolation. NaN for none.
 */
export function percentile(samples: readonly number[], p: number): number {
  const s = sorted(samples);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
}
