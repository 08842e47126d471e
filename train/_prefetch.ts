/**
 * Read-ahead over an async iterator: keeps up to `depth` items being produced while the consumer
 * works on the current one, so image reads and sharp decoding (libuv threads) overlap the step.
 */
export async function* prefetch<T>(source: AsyncIterator<T>, depth: number): AsyncGenerator<T> {
  const queue: Array<Promise<IteratorResult<T>>> = [];
  const fill = () => {
    while (queue.length < Math.max(1, depth)) queue.push(source.next());
  };
  try {
    for (;;) {
      fill();
      const next = await (queue.shift() as Promise<IteratorResult<T>>);
      if (next.done) return;
      yield next.value;
    }
  } finally {
    // Settle what is in flight so no rejection goes unhandled, then close the source.
    await Promise.allSettled(queue);
    await source.return?.(undefined);
  }
}
