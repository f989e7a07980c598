interface Held {
  first: number
  last: number
  done: Promise<void>
}

/**
 * Range locks over chunk indices, granted in request order. A write holds every chunk it touches
 * from before it reads its edge chunks until its batch has committed, so two writes to one chunk
 * can never both read the old contents (a lost update).
 */
export class ChunkLocks {
  #held = new Set<Held>()

  async acquire (first: number, last: number): Promise<() => void> {
    const earlier: Array<Promise<void>> = []
    for (const h of this.#held) if (h.first <= last && first <= h.last) earlier.push(h.done)
    let release!: () => void
    const entry: Held = { first, last, done: new Promise((resolve) => { release = resolve }) }
    this.#held.add(entry)
    await Promise.all(earlier)
    return () => {
      this.#held.delete(entry)
      release()
    }
  }
}
