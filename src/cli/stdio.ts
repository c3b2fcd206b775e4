/**
 * libvirt closes our stderr pipe after start-up: EPIPE on stdio must not kill the helper
 * (docs/internals.md#stderr-may-be-a-closed-pipe), so process.stdout and process.stderr get
 * an `error` listener. Node creates each stream on first use (for a pipe, a net.Socket:
 * some 28 internal modules and about 5 ms), and a default start writes nothing, so the
 * listener is added when the stream is created rather than by creating it now (start-up,
 * docs/performance.md). Where the property is not Node's lazy getter, the stream is
 * created and the listener added at once, as before.
 */
type StdioName = 'stdout' | 'stderr';

export function ignoreStdioErrors(proc: NodeJS.Process = process): void {
  for (const name of ['stdout', 'stderr'] as const) onCreation(proc, name);
}

function onCreation(proc: NodeJS.Process, name: StdioName): void {
  const descriptor = Object.getOwnPropertyDescriptor(proc, name);
  const create = descriptor?.get;
  if (descriptor === undefined || create === undefined || descriptor.configurable !== true) {
    proc[name].on('error', () => undefined);
    return;
  }
  let stream: NodeJS.WriteStream | undefined;
  Object.defineProperty(proc, name, {
    configurable: true,
    enumerable: descriptor.enumerable ?? true,
    get(): NodeJS.WriteStream {
      if (stream === undefined) {
        stream = create.call(proc) as NodeJS.WriteStream;
        stream.on('error', () => undefined);
      }
      return stream;
    },
  });
}
