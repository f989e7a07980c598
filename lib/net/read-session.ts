import { MirrorError, codes } from '../errors'
import { entryDigests, fingerprintRange, newFingerprint, type KeyRangeBounds } from '../fingerprint'
import type { ReadView, ReplicaEngine, ReplicaPosition } from '../replica/engine'
import { StoreCursor, type CursorPosition } from '../replica/cursor'
import type { Message } from './protocol'

const MAX_READ_BYTES = 16 * 1024 * 1024
const MAX_RANGES = 256

const bytesOrNull = (v: unknown): v is Uint8Array | null => v === null || v instanceof Uint8Array
const asKey = (v: Uint8Array | null): Buffer | null => v === null ? null : Buffer.from(v)

/**
 * What a reading connection (a restore, a verify, a status) sees: one view of the replica, taken
 * at its first request and held for the connection's life, so every read and fingerprint of it
 * is of the same real state of the primary, whatever the replica applies meanwhile.
 */
export class ReadSession {
  #engine: ReplicaEngine
  #view: ReadView | null = null
  #cursor: StoreCursor | null = null

  constructor (engine: ReplicaEngine) {
    this.#engine = engine
  }

  #ensure (): ReadView {
    this.#view ??= this.#engine.readView()
    return this.#view
  }

  #position (withHistory: boolean): Omit<ReplicaPosition, 'history'> & { history?: ReplicaPosition['history'] } {
    const { history, ...rest } = this.#ensure().position
    return withHistory ? { ...rest, history } : rest
  }

  /** `{ from: { key, offset }, maxBytes, history? }` → the next chunk of entries, where the one after starts, and the view's position. */
  async read (m: Message): Promise<Record<string, unknown>> {
    const from = m.from as Record<string, unknown> | undefined
    if (typeof from !== 'object' || from === null || !bytesOrNull(from.key) || !Number.isSafeInteger(from.offset) || (from.offset as number) < 0) {
      throw new MirrorError('read needs from: { key, offset }', codes.PROTOCOL)
    }
    const maxBytes = Number.isSafeInteger(m.maxBytes) && (m.maxBytes as number) > 0 ? Math.min(m.maxBytes as number, MAX_READ_BYTES) : 4 * 1024 * 1024
    const { snapshot, empty } = this.#ensure()
    if (empty) return { ops: [], next: null, position: this.#position(m.history === true), approximateDone: null }
    this.#cursor ??= new StoreCursor(this.#engine.db, snapshot)
    const chunk = await this.#cursor.read({ key: asKey(from.key as Uint8Array | null), offset: from.offset as number } satisfies CursorPosition, maxBytes)
    const first = from.key === null && from.offset === 0
    return {
      ops: chunk.ops,
      next: chunk.next,
      position: this.#position(m.history === true),
      // On-disk sizes (compressed): their ratio tells how far the read has come.
      approximateDone: chunk.next?.key === null || chunk.next === null ? null : await this.#approximateBytes(chunk.next.key),
      ...(first ? { approximateBytes: await this.#approximateBytes() } : {})
    }
  }

  /** `{ ranges: [{ after, upto }] }` → a fingerprint of each range of the view. */
  async fingerprint (m: Message): Promise<Record<string, unknown>> {
    const ranges = checkRanges(m)
    const { snapshot, empty } = this.#ensure()
    const fingerprints = []
    for (const r of ranges) fingerprints.push(empty ? newFingerprint() : await fingerprintRange(this.#engine.db, r.after, r.upto, snapshot))
    return { fingerprints, position: this.#position(false) }
  }

  /** `{ range: { after, upto }, from, limit, maxBytes? }` → the range's entries with their digests, a page of them. */
  async digests (m: Message): Promise<Record<string, unknown>> {
    const { range, from, limit, maxBytes } = checkDigestsRequest(m)
    const { snapshot, empty } = this.#ensure()
    if (empty) return { entries: [], more: false, position: this.#position(false) }
    return { ...(await entryDigests(this.#engine.db, range, from, limit, snapshot, maxBytes)), position: this.#position(false) }
  }

  async #approximateBytes (upto?: Uint8Array): Promise<number | null> {
    return await approximateSize(this.#engine.db, upto)
  }

  async close (): Promise<void> {
    await this.#cursor?.close()
    this.#view?.release()
    this.#view = null
  }
}

/** A fingerprint request's ranges, checked. */
export function checkRanges (m: Message): KeyRangeBounds[] {
  const ranges = m.ranges
  if (!Array.isArray(ranges) || ranges.length === 0 || ranges.length > MAX_RANGES ||
      !ranges.every((r) => typeof r === 'object' && r !== null && bytesOrNull(r.after) && bytesOrNull(r.upto))) {
    throw new MirrorError(`fingerprint needs 1 to ${MAX_RANGES} ranges of { after, upto }`, codes.PROTOCOL)
  }
  return ranges.map((r) => ({ after: asKey(r.after), upto: asKey(r.upto) }))
}

/**
 * A digests request, checked. `maxBytes` is what the asking side can take in one frame (older
 * clients leave it out: then a page is bounded by its entries alone, as before).
 */
export function checkDigestsRequest (m: Message): { range: KeyRangeBounds, from: Buffer | null, limit: number, maxBytes: number } {
  const r = m.range as Record<string, unknown> | undefined
  if (typeof r !== 'object' || r === null || !bytesOrNull(r.after) || !bytesOrNull(r.upto) || !bytesOrNull(m.from) ||
      !Number.isSafeInteger(m.limit) || (m.limit as number) < 1 ||
      (m.maxBytes !== undefined && m.maxBytes !== null && (!Number.isSafeInteger(m.maxBytes) || (m.maxBytes as number) < 1))) {
    throw new MirrorError('digests needs range: { after, upto }, from, a positive limit and, if any, a positive maxBytes', codes.PROTOCOL)
  }
  const maxBytes = typeof m.maxBytes === 'number' ? m.maxBytes : Infinity
  return { range: { after: asKey(r.after as Uint8Array | null), upto: asKey(r.upto as Uint8Array | null) }, from: asKey(m.from as Uint8Array | null), limit: Math.min(m.limit as number, 10_000), maxBytes }
}

/** LevelDB's estimate of the bytes its files hold for the keys below `upto` (all, without it), or null. */
export async function approximateSize (db: unknown, upto?: Uint8Array): Promise<number | null> {
  const sizer = db as { approximateSize?: (start: Buffer, end: Buffer, options: object) => Promise<number> }
  if (typeof sizer.approximateSize !== 'function') return null
  try {
    return await sizer.approximateSize(Buffer.alloc(0), upto === undefined ? Buffer.from([0xff, 0xff, 0xff, 0xff]) : Buffer.from(upto), { keyEncoding: 'buffer' })
  } catch {
    return null
  }
}
