/**
 * Yields what `source` yields, asking it for the next item as soon as one is handed out, so the
 * caller's work on one item (a replica applying a part) overlaps the source's work on the next
 * (reading its values from a snapshot, in the inner db's threads). One item is read ahead, no more.
 *
 * If the caller stops early, the read in flight is waited for and the source closed before this
 * returns: nothing reads on after the caller has moved on (and closed the snapshot, say).
 */
export async function * readAhead<T> (source: AsyncIterator<T>): AsyncGenerator<T> {
  let next = source.next()
  try {
    while (true) {
      const item = await next
      if (item.done === true) return
      next = source.next()
      // Its failure is seen when it is awaited; until then the caller is busy and nobody listens.
      next.catch(() => {})
      yield item.value
    }
  } finally {
    await next.catch(() => {})
    await source.return?.()
  }
}
