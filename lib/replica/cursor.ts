import type { AbstractSnapshot } from 'abstract-level'
import type { ReplicaOp } from '../adapter'
import { BUFFERS, type InnerDb } from '../inner'
import { userRanges } from '../user-ranges'

/**
 * Where a read of a store's entries stands: after the whole entry `key` (`offset` 0), or inside
 * its value, `offset` bytes of it read (null key: at the start).
 */
export interface CursorPosition {
  key: Buffer | null
  offset: number
}

/**
 * Reads every user entry of a store at one snapshot, in key order, in chunks of about `maxBytes`:
 * what a restore copies. A value larger than a chunk comes in pieces (`more: true` on all but the
 * last), so a chunk fits in a frame whatever the value sizes. Reading on from where the last chunk
 * ended continues the same iterator; any other position seeks to it.
 */
export class StoreCursor {
  #db: InnerDb
  #snapshot: AbstractSnapshot
  #it: ReturnType<InnerDb['iterator']> | null = null
  #ranges: ReturnType<typeof userRanges> = []
  #at: CursorPosition | null = null
  // An entry read from the iterator but not (wholly) delivered yet.
  #current: { key: Buffer, value: Buffer, offset: number } | null = null

  constructor (db: InnerDb, snapshot: AbstractSnapshot) {
    this.#db = db
    this.#snapshot = snapshot
  }

  /** The next chunk from `from`, and where the one after it starts (null: that was the last). */
  async read (from: CursorPosition, maxBytes: number): Promise<{ ops: ReplicaOp[], next: CursorPosition | null }> {
    if (this.#at === null || !samePosition(this.#at, from)) await this.#seek(from)
    const ops: ReplicaOp[] = []
    let bytes = 0
    let pos = from
    while (true) {
      const entry = this.#current ?? await this.#next()
      if (entry === null) {
        this.#at = null
        return { ops, next: null }
      }
      const cost = entry.key.length + entry.value.length - entry.offset
      if (bytes + cost <= maxBytes) {
        ops.push({ type: 'put', key: entry.key, value: entry.offset === 0 ? entry.value : entry.value.subarray(entry.offset) })
        bytes += cost
        this.#current = null
        pos = { key: entry.key, offset: 0 }
        continue
      }
      this.#current = entry
      if (ops.length === 0) {
        // Alone it does not fit either: a piece of its value, the rest in the chunks that follow.
        const end = entry.offset + Math.max(1, maxBytes - entry.key.length)
        ops.push({ type: 'put', key: entry.key, value: entry.value.subarray(entry.offset, end), more: true })
        entry.offset = end
        pos = { key: entry.key, offset: end }
      }
      this.#at = pos
      return { ops, next: pos }
    }
  }

  async close (): Promise<void> {
    await this.#it?.close()
    this.#it = null
  }

  async #seek (from: CursorPosition): Promise<void> {
    await this.close()
    this.#current = null
    this.#ranges = userRanges(from.key, null)
    if (from.key !== null && from.offset > 0) {
      const value: Buffer | undefined = await this.#db.get(from.key, { ...BUFFERS, snapshot: this.#snapshot })
      if (value !== undefined && value.length > from.offset) this.#current = { key: from.key, value, offset: from.offset }
    }
    this.#at = from
  }

  async #next (): Promise<{ key: Buffer, value: Buffer, offset: number } | null> {
    while (true) {
      if (this.#it === null) {
        const range = this.#ranges.shift()
        if (range === undefined) return null
        this.#it = this.#db.iterator({ ...range, ...BUFFERS, snapshot: this.#snapshot })
      }
      const entry = await this.#it.next() as [Buffer, Buffer] | undefined
      if (entry !== undefined) return { key: entry[0], value: entry[1], offset: 0 }
      await this.#it.close()
      this.#it = null
    }
  }
}

function samePosition (a: CursorPosition, b: CursorPosition): boolean {
  return a.offset === b.offset && (a.key === null ? b.key === null : b.key !== null && a.key.equals(b.key))
}
