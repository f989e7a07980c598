import { AbstractIterator } from 'abstract-level'
import { isReserved, reservedEnd, reservedStart } from './keyspace'

type Entry = [Buffer | undefined, Buffer | undefined]

/** What an iterator of the inner db looks like to us (abstract-level's public iterator). */
export interface InnerIterator {
  next (): Promise<[Buffer, Buffer] | undefined>
  nextv (size: number, options?: unknown): Promise<Array<[Buffer, Buffer]>>
  seek (target: Buffer, options?: unknown): void
  close (): Promise<void>
}

/**
 * An iterator of the inner db with the reserved range taken out. When it meets a reserved key it
 * seeks past the whole range (which can hold millions of log records) instead of reading through.
 * The inner iterator always yields keys, so reserved entries are recognised even when the user
 * asked for values only; `limit` is counted by AbstractIterator over what we yield.
 */
export class UserIterator<K, V> extends AbstractIterator<unknown, K, V> {
  #inner: InnerIterator
  #keys: boolean
  #reverse: boolean

  constructor (db: unknown, options: Record<string, unknown>, inner: InnerIterator) {
    super(db, options)
    this.#inner = inner
    this.#keys = options.keys !== false
    this.#reverse = options.reverse === true
  }

  #skipReserved (): void {
    // In reverse, seek() lands on the last key <= target; no key equals reservedStart itself.
    this.#inner.seek(this.#reverse ? reservedStart : reservedEnd)
  }

  #shape (entry: [Buffer, Buffer]): Entry {
    if (!this.#keys) (entry as Entry)[0] = undefined
    return entry
  }

  async _next (): Promise<Entry | undefined> {
    while (true) {
      const entry = await this.#inner.next()
      if (entry === undefined) return undefined
      if (!isReserved(entry[0])) return this.#shape(entry)
      this.#skipReserved()
    }
  }

  async _nextv (size: number): Promise<Entry[]> {
    const out: Entry[] = []
    while (out.length < size) {
      const entries = await this.#inner.nextv(size - out.length)
      if (entries.length === 0) break
      let hit = false
      for (const entry of entries) {
        if (isReserved(entry[0])) {
          hit = true
          break
        }
        out.push(this.#shape(entry))
      }
      if (!hit) continue
      // Entries after the reserved key in this page were read past the seek target; drop them
      // and read again from beyond the reserved range.
      this.#skipReserved()
    }
    return out
  }

  _seek (target: Buffer, options: unknown): void {
    this.#inner.seek(target, options)
  }

  async _close (): Promise<void> {
    await this.#inner.close()
  }
}
