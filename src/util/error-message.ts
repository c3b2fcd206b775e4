/**
 * The text of a thrown value for a log line: an Error's message (or, where a bug is being
 * reported, its stack), anything else as String() makes it. Pure.
 */

/** `error.message`, or String(error) for a thrown non-Error. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** `error.stack` (its message if there is none), or String(error): for unexpected failures. */
export function errorStack(error: unknown): string {
  return error instanceof Error ? error.stack ?? error.message : String(error);
}
