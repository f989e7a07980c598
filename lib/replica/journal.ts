import type { BatchPart, ReplicaOp } from '../adapter'
import { MirrorError, codes } from '../errors'
import { BUFFERS, type InnerDb, type InnerOp } from '../inner'
import { metaKey, writeSeq } from '../keyspace'
import { userRanges } from '../user-ranges'
import { decodeStagedPart, encodeStagedPart } from './part-codec'
import { wholeOp, type Piece } from './pieces'

const PART_PREFIX = metaKey('journal-part/')
const PARTS_RANGE = { gte: PART_PREFIX, lt: metaKey('journal-part0'), keyEncoding: 'buffer' } as const
/** Ops per write while a staged batch is applied, and keys per read while unlisted keys are found. */
export const APPLY_CHUNK = 1000

function partKey (index: number): Buffer {
  const key = Buffer.allocUnsafe(PART_PREFIX.length + 8)
  PART_PREFIX.copy(key, 0)
  writeSeq(key, PART_PREFIX.length, index)
  return key
}

/** A part as staged: its copy range (if any) and its ops, pieces of large values included. */
export interface StagedPart {
  range: BatchPart['range'] | null
  ops: ReplicaOp[]
}

/** The staged parts of a batch in the replica's reserved range, for batches too large to hold in memory. */
export class Journal {
  #db: InnerDb

  constructor (db: InnerDb) {
    this.#db = db
  }

  stage (index: number, part: StagedPart, also: InnerOp[] = []): Promise<void> {
    return this.#db.batch([{ type: 'put', key: partKey(index), value: encodeStagedPart(part) }, ...also], BUFFERS)
  }

  async read (index: number): Promise<StagedPart> {
    const raw = await this.#db.get(partKey(index), BUFFERS)
    if (raw === undefined) throw new MirrorError(`The replica journal has lost part ${index}`, codes.CORRUPT)
    return decodeStagedPart(raw)
  }

  clear (): Promise<void> {
    return this.#db.clear(PARTS_RANGE)
  }

  /**
   * Applies parts `start .. count-1` in order, a chunk of ops at a time: for copy parts, first
   * deletes the replica's keys in the range that the part does not list. Assembles pieces of large
   * values across parts. `check` runs between writes (it throws to stop; the caller keeps the
   * journal). With `progress`, the last write of each part that does not end inside a value also
   * writes `progress.ops(next)`, and `progress.done(next)` runs once it landed: an apply that
   * fails can start again at `next` instead of at the first part.
   */
  async apply (count: number, check: () => void, start = 0, progress?: { ops: (next: number) => InnerOp[], done: (next: number) => void }): Promise<void> {
    const assembling: { piece: Piece | null } = { piece: null }
    for (let i = start; i < count; i++) {
      check()
      const { range, ops } = await this.read(i)
      if (range !== null && range !== undefined) {
        for await (const gone of unlistedKeys(this.#db, range, ops)) {
          check()
          await this.#db.batch(gone.map((key) => ({ type: 'del' as const, key })), BUFFERS)
        }
      }
      let batch: InnerOp[] = []
      for (const op of ops) {
        const whole = wholeOp(assembling, op)
        if (whole === null) continue
        batch.push(whole)
        if (batch.length >= APPLY_CHUNK) {
          check()
          await this.#db.batch(batch, BUFFERS)
          batch = []
        }
      }
      const done = progress !== undefined && assembling.piece === null && i + 1 < count
      if (done) batch.push(...progress.ops(i + 1))
      if (batch.length > 0) await this.#db.batch(batch, BUFFERS)
      if (done) progress.done(i + 1)
    }
  }
}

/**
 * The replica's user keys in `range` that `ops` do not list, a chunk at a time: a copy part lists
 * every key of its range, so the replica's other keys there are gone on the primary.
 */
export async function * unlistedKeys (db: InnerDb, range: NonNullable<BatchPart['range']>, ops: ReplicaOp[]): AsyncGenerator<Buffer[]> {
  const listed = new Set(ops.map((op) => op.key.toString('latin1')))
  for (const r of userRanges(range.after, range.upto)) {
    const it = db.keys({ ...r, keyEncoding: 'buffer' })
    try {
      while (true) {
        const keys: Buffer[] = await it.nextv(APPLY_CHUNK)
        if (keys.length === 0) break
        const gone = keys.filter((k) => !listed.has(k.toString('latin1')))
        if (gone.length > 0) yield gone
      }
    } finally {
      await it.close()
    }
  }
}
