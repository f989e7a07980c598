import type { BatchPart, PartAck, PendingCopy, ReplicaHello, ReplicaOp } from '../adapter'
import { MirrorError, codes } from '../errors'
import { BUFFERS, type InnerDb } from '../inner'
import { metaKey, writeSeq } from '../keyspace'
import { decodeStagedPart, encodeStagedPart, packState, unpackState, validatePart } from './part-codec'
import { userRanges } from '../user-ranges'

const STATE_KEY = metaKey('replica')
const JOURNAL_KEY = metaKey('journal')
const PART_PREFIX = metaKey('journal-part/')
const PARTS_RANGE = { gte: PART_PREFIX, lt: metaKey('journal-part0') }
const APPLY_CHUNK = 1000

interface ReplicaState {
  generation: string | null
  watermark: number
}

interface JournalHeader {
  generation: string
  from: number
  to: number
  full: boolean
  parts: number
  committed: boolean
  /** For a full batch: the last key its copy parts cover so far (null: none, or all if done). */
  upto: Buffer | null
  copyDone: boolean
}

function partKey (index: number): Buffer {
  const key = Buffer.allocUnsafe(PART_PREFIX.length + 8)
  PART_PREFIX.copy(key, 0)
  writeSeq(key, PART_PREFIX.length, index)
  return key
}

/**
 * The replica side of mirror-level: applies batches to a replica database, atomically and exactly
 * once, and keeps the replica a prefix state of the primary at every moment (invariants 3 and 4).
 *
 * A batch of one incremental part is one atomic batch of the replica db with the new watermark.
 * Larger batches and full copies go through a redo journal in the reserved range: parts are staged
 * as they arrive, the final part writes a commit record, the journal is applied and then cleared.
 * `open()` runs recovery: a committed journal is applied again (it is idempotent); an uncommitted
 * incremental one is discarded; an uncommitted full copy is kept so the primary can resume it.
 *
 * Used by every adapter: in process by LevelReplica, behind the network by `mirror-level serve`.
 * The engine owns its db: `open()` opens it and `close()` closes it.
 */
export class ReplicaEngine {
  #db: InnerDb
  #state: ReplicaState = { generation: null, watermark: 0 }
  #journal: JournalHeader | null = null
  #queue: Promise<unknown> = Promise.resolve()
  #open = false

  constructor (db: InnerDb) {
    this.#db = db
  }

  get db (): InnerDb { return this.#db }

  async open (): Promise<void> {
    if (this.#open) return
    await this.#db.open()
    const [state, journal] = await this.#db.getMany([STATE_KEY, JOURNAL_KEY], BUFFERS)
    if (state !== undefined) this.#state = unpackState<ReplicaState>(state, 'replica state')
    this.#journal = journal === undefined ? null : unpackState<JournalHeader>(journal, 'replica journal')
    if (this.#journal?.committed === true) {
      await this.#applyJournal(this.#journal)
    } else if (this.#journal !== null && !this.#journal.full) {
      await this.#discardJournal()
    } else if (this.#journal === null) {
      await this.#db.clear({ ...PARTS_RANGE, keyEncoding: 'buffer' })
    }
    this.#open = true
  }

  async close (): Promise<void> {
    if (!this.#open) return
    this.#open = false
    await this.#queue.catch(() => {})
    await this.#db.close()
  }

  /** What this replica holds: see {@link ReplicaHello}. */
  hello (): ReplicaHello {
    const j = this.#journal
    const pending: PendingCopy | null = j !== null && j.full && !j.committed && !j.copyDone
      ? { to: j.to, generation: j.generation, parts: j.parts, upto: j.upto }
      : null
    return { generation: this.#state.generation, watermark: this.#state.watermark, pending }
  }

  /** Applies (or stages) one part; see {@link ReplicaAdapter.apply}. Serialized. */
  apply (input: BatchPart): Promise<PartAck> {
    const run = this.#queue.then(() => this.#apply(input))
    this.#queue = run.catch(() => {})
    return run
  }

  async #apply (input: BatchPart): Promise<PartAck> {
    if (!this.#open) throw new MirrorError('The replica is not open', codes.NOT_OPEN)
    const part = validatePart(input)
    const st = this.#state
    const ack = { watermark: st.watermark }
    if (part.full) {
      if (part.generation === st.generation && part.to <= st.watermark) return ack
    } else {
      if (st.generation === null) throw new MirrorError('This replica was never synced: it needs a full copy first', codes.GAP)
      if (part.to <= st.watermark) return ack
      if (part.from > st.watermark) {
        throw new MirrorError(`Batch (${part.from}, ${part.to}] would leave a gap after watermark ${st.watermark}; not applied`, codes.GAP)
      }
    }

    if (part.index === 0 && part.final && !part.full) {
      // The fast path: one atomic batch of the data and the watermark.
      await this.#discardJournal()
      const next = { generation: part.generation, watermark: part.to }
      await this.#db.batch([...part.ops, { type: 'put', key: STATE_KEY, value: packState(next) }], BUFFERS)
      this.#state = next
      return { watermark: next.watermark }
    }

    const header = this.#nextHeader(part)
    if (part.final && header.full && !header.copyDone) {
      throw new MirrorError('Bad batch part: a full batch cannot end before its copy reaches the end of the keyspace', codes.BAD_PART)
    }
    if (part.index === 0) await this.#discardJournal()
    header.committed = part.final
    await this.#db.batch([
      { type: 'put', key: partKey(part.index), value: encodeStagedPart(part) },
      { type: 'put', key: JOURNAL_KEY, value: packState(header) }
    ], BUFFERS)
    this.#journal = header
    if (part.final) await this.#applyJournal(header)
    return { watermark: this.#state.watermark }
  }

  // The journal header after staging `part`, or an error if the part does not follow the journal.
  #nextHeader (part: BatchPart): JournalHeader {
    const copyUpto = part.range !== undefined ? part.range.upto : null
    if (part.index === 0) {
      if (part.full && (part.range === undefined || part.range.after !== null)) {
        throw new MirrorError('Bad batch part: a full batch starts with a copy part from the first key', codes.BAD_PART)
      }
      return {
        generation: part.generation,
        from: part.from,
        to: part.to,
        full: part.full,
        parts: 1,
        committed: false,
        upto: copyUpto,
        copyDone: part.full && copyUpto === null
      }
    }
    const j = this.#journal
    if (j === null || j.parts !== part.index || j.full !== part.full || j.generation !== part.generation) {
      throw new MirrorError(`Bad batch part: part ${part.index} does not follow the staged batch (${j === null ? 'none' : `${j.parts} parts`})`, codes.BAD_PART)
    }
    if (!part.full && (j.from !== part.from || j.to !== part.to)) {
      throw new MirrorError('Bad batch part: a later part of an incremental batch must have its batch\'s from and to', codes.BAD_PART)
    }
    if (part.full) {
      if (part.range !== undefined) {
        const contiguous = !j.copyDone && j.upto !== null && part.range.after !== null && part.range.after.equals(j.upto)
        if (!contiguous) throw new MirrorError('Bad batch part: copy parts must tile the keyspace in order', codes.BAD_PART)
      } else if (!j.copyDone) {
        throw new MirrorError('Bad batch part: a full batch lists changed keys only after its copy is complete', codes.BAD_PART)
      }
      if (part.to < j.to) throw new MirrorError('Bad batch part: a resumed copy cannot go back in seq', codes.BAD_PART)
    }
    return {
      ...j,
      to: part.to,
      parts: j.parts + 1,
      upto: part.range !== undefined ? copyUpto : j.upto,
      copyDone: j.copyDone || (part.range !== undefined && copyUpto === null)
    }
  }

  // Redo: apply every staged part in order, then the watermark; safe to repeat after a crash.
  async #applyJournal (header: JournalHeader): Promise<void> {
    for (let i = 0; i < header.parts; i++) {
      const raw = await this.#db.get(partKey(i), BUFFERS)
      if (raw === undefined) throw new MirrorError(`The replica journal has lost part ${i}`, codes.CORRUPT)
      const { range, ops } = decodeStagedPart(raw)
      if (range !== null && range !== undefined) await this.#deleteUnlisted(range.after, range.upto, ops)
      for (let at = 0; at < ops.length; at += APPLY_CHUNK) {
        await this.#db.batch(ops.slice(at, at + APPLY_CHUNK), BUFFERS)
      }
    }
    const next = { generation: header.generation, watermark: header.to }
    await this.#db.batch([
      { type: 'put', key: STATE_KEY, value: packState(next) },
      { type: 'del', key: JOURNAL_KEY }
    ], BUFFERS)
    this.#state = next
    this.#journal = null
    await this.#db.clear({ ...PARTS_RANGE, keyEncoding: 'buffer' })
  }

  // A copy part lists every key of its range: the replica's other keys there are gone on the primary.
  async #deleteUnlisted (after: Buffer | null, upto: Buffer | null, ops: ReplicaOp[]): Promise<void> {
    const listed = new Set(ops.map((op) => op.key.toString('latin1')))
    for (const range of userRanges(after, upto)) {
      const it = this.#db.keys({ ...range, keyEncoding: 'buffer' })
      try {
        while (true) {
          const keys: Buffer[] = await it.nextv(APPLY_CHUNK)
          if (keys.length === 0) break
          const gone = keys.filter((k) => !listed.has(k.toString('latin1')))
          if (gone.length > 0) await this.#db.batch(gone.map((key) => ({ type: 'del' as const, key })), BUFFERS)
        }
      } finally {
        await it.close()
      }
    }
  }

  async #discardJournal (): Promise<void> {
    if (this.#journal === null) return
    await this.#db.del(JOURNAL_KEY, BUFFERS)
    this.#journal = null
    await this.#db.clear({ ...PARTS_RANGE, keyEncoding: 'buffer' })
  }
}
