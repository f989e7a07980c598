import { existsSync } from 'node:fs'
import { dirname } from 'node:path'
import type { AbstractSnapshot } from 'abstract-level'
import type { BatchPart, PartAck, PendingCopy, ReplicaHello } from '../adapter'
import { MirrorError, codes } from '../errors'
import { BUFFERS, writeBatch, type InnerDb, type InnerOp } from '../inner'
import { logRange, metaKeys } from '../keyspace'
import type { MemoryBudget } from '../memory-budget'
import { positiveInteger } from '../options'
import { userRanges } from '../user-ranges'
import { Journal, unlistedKeys, type StagedPart } from './journal'
import { wholeOp, type Piece } from './pieces'
import { opsBytes, validatePart } from './part-codec'
import { bad, continuePieces, firstHeader, followHeader, nextHistory } from './batch-rules'
import { NEVER_SYNCED, decodeJournal, decodeReplicaState, encodeJournal, encodeReplicaState, type JournalHeader, type ReplicaState } from './state'
import { checksum, type HistoryEntry } from '../history'
import { entryDigests, fingerprintRange, newFingerprint, type Fingerprint, type KeyRangeBounds } from '../fingerprint'
import { demotedRecords, saveEveryKey, trimDiscarded } from './discarded'

/** Options of {@link ReplicaEngine}. */
export interface ReplicaEngineOptions {
  /**
   * A batch of up to this many bytes of keys and values is held in memory until its final part
   * and applied as one atomic batch of the replica db, whatever its number of parts; a larger one
   * is staged in the journal. Default 32 MiB.
   */
  maxApplyBytes?: number
  /** A budget shared with other holders (a server's connections): a batch it cannot hold is journaled. */
  memory?: MemoryBudget
}

/** The state of the primary a replica (or a view of it) holds: where it stands in which history. */
export interface ReplicaPosition {
  generation: string | null
  watermark: number
  history: HistoryEntry[] | null
  checksum: string | null
}

/** A batch held in memory until its final part. Pieces of large values are assembled as they come. */
interface Held {
  parts: StagedPart[]
  bytes: number
  piece: { key: Buffer, chunks: Buffer[], part: number } | null
}

/**
 * The batch being received: its header, and its parts in memory (`held`) or in the journal (null).
 * A first copy written in place holds only the value whose pieces are still arriving (`piece`).
 */
interface Staged {
  header: JournalHeader
  held: Held | null
  piece?: Piece | null
}

/** The state a reader sees during a journaled apply: the replica just before it, held open. */
interface Stable {
  snapshot: AbstractSnapshot
  users: number
  done: boolean
}

/**
 * The replica side of mirror-level: applies batches to a replica database, atomically and exactly
 * once, and keeps the replica a prefix state of the primary at every moment (invariants 3 and 4).
 *
 * A batch that fits `maxApplyBytes` is held in memory until its final part and written as one
 * atomic batch of the replica db with the new watermark, however many parts it came in. A larger
 * batch (a big first copy, a catch-up with large values) goes through a redo journal in the
 * reserved range: parts are staged as they arrive, the final part writes a commit record, the
 * journal is applied and cleared. `open()` runs recovery: a committed journal is applied again (it
 * is idempotent); an uncommitted incremental one is discarded; an uncommitted full copy is kept so
 * the primary can resume it. While a journal is applied, readers through {@link readView} see the
 * state before it.
 *
 * A store that holds data no primary sent it, or a primary's own store, refuses a full copy
 * unless the copy says `overwrite` (`MIRROR_REPLICA_NOT_EMPTY`), and changes nothing.
 *
 * Used by every adapter: in process by LevelReplica, behind the network by `mirror-level serve`.
 * The engine owns its db: `open()` opens it and `close()` closes it (also when opening fails).
 */
export class ReplicaEngine {
  #db: InnerDb
  #journal: Journal
  #maxApplyBytes: number
  #memory: MemoryBudget | null
  #state: ReplicaState = NEVER_SYNCED
  // A demoted primary's log records, sent in its hello so that its new primary can rejoin it.
  #demotedRecords: Array<[number, number, Buffer[]]> | null = null
  #staged: Staged | null = null
  #foreign: 'data' | 'primary' | null = null
  #queue: Promise<unknown> = Promise.resolve()
  #open = false
  #opening: Promise<void> | null = null
  #closing = false
  #stable: Stable | null = null

  constructor (db: InnerDb, options: ReplicaEngineOptions = {}) {
    this.#db = db
    this.#journal = new Journal(db)
    this.#maxApplyBytes = positiveInteger('ReplicaEngine', 'maxApplyBytes', options.maxApplyBytes, 32 * 1024 * 1024)
    this.#memory = options.memory ?? null
  }

  get db (): InnerDb { return this.#db }
  get isOpen (): boolean { return this.#open }

  /** Opens the db and runs recovery. On any failure the db is closed again and the cause thrown. */
  open (): Promise<void> {
    if (this.#open) return Promise.resolve()
    this.#opening ??= this.#openAndRecover().finally(() => { this.#opening = null })
    return this.#opening
  }

  async #openAndRecover (): Promise<void> {
    this.#closing = false
    try {
      await this.#db.open()
      const [state, journal] = await this.#db.getMany([metaKeys.replica, metaKeys.journal], BUFFERS)
      this.#state = state === undefined ? NEVER_SYNCED : decodeReplicaState(state)
      const header = journal === undefined ? null : decodeJournal(journal)
      this.#staged = header === null ? null : { header, held: null }
      if (header?.committed === true) await this.#applyJournal(header)
      else if (header !== null && !header.full && !header.resumable) await this.#dropStaged()
      else if (header === null) await this.#journal.clear()
      await this.#narrowSaved()
      this.#foreign = await this.#detectForeign()
      this.#demotedRecords = this.#state.demoted !== null ? await demotedRecords(this.#db) : null
      this.#open = true
    } catch (err) {
      this.#staged = null
      this.#releaseStable()
      await this.#db.close().catch(() => {})
      throw err
    }
  }

  async #detectForeign (): Promise<'data' | 'primary' | null> {
    const [head, history] = await this.#db.getMany([metaKeys.head, metaKeys.history], BUFFERS)
    if (head !== undefined || history !== undefined) return 'primary'
    if (this.#state.generation !== null || this.#state.demoted !== null) return null
    // What a first copy written in place has written so far is this line's, not foreign data.
    if (this.#staged?.header.inPlace === true) return null
    for (const range of userRanges(null, null)) {
      const first = await this.#db.keys({ ...range, limit: 1, keyEncoding: 'buffer' }).all()
      if (first.length > 0) return 'data'
    }
    return null
  }

  /** Waits for the part in hand, stops a journaled apply at its next step (it resumes on the next open), closes the db. */
  async close (): Promise<void> {
    if (!this.#open && this.#opening === null) return
    this.#closing = true
    await this.#opening?.catch(() => {})
    if (!this.#open) return
    this.#open = false
    await this.#queue.catch(() => {})
    this.#giveBack()
    this.#staged = null
    this.#releaseStable()
    await this.#db.close()
  }

  /** What this replica holds: see {@link ReplicaHello}. */
  hello (): ReplicaHello {
    const staged = this.#staged
    const j = staged !== null && staged.held === null ? staged.header : null
    const pending: PendingCopy | null = j === null || j.committed
      ? null
      // A copy resumes after the last key its parts hold whole: cut in the middle of a value's
      // pieces, the primary would resume after that key and the rest of the value would never
      // come (every later part refused, MIRROR_BAD_PART, for good). Such a copy starts over.
      : j.full && !j.copyDone
        ? (j.piece === null ? { to: j.readAt, generation: j.readAtGeneration, parts: j.parts, upto: j.upto } : null)
        // An incremental batch resumes between keys, not in the middle of a value's pieces.
        : !j.full && j.resumable && j.piece === null && j.from === this.#state.watermark
          ? { to: j.readAt, generation: j.readAtGeneration, parts: j.parts, upto: j.upto, from: j.from }
          : null
    const { generation, watermark, history, demoted } = this.#state
    return {
      generation,
      watermark,
      pending,
      foreign: this.#foreign,
      checksum: history === null ? null : checksum(history),
      demoted: demoted === null ? null : { history: demoted.history, head: demoted.head, records: this.#demotedRecords }
    }
  }

  /**
   * For readers in this process: a snapshot of a real state of the primary. During a journaled
   * apply it is the replica as it was before the apply began; otherwise the replica as it is now.
   * Call `release` when done with it. `empty`: the replica was never synced, so it holds no state
   * of a primary whatever its db holds (part of a first copy, data a copy is to overwrite):
   * readers must show nothing.
   */
  readView (): ReadView {
    if (!this.#open) throw new MirrorError('The replica is not open', codes.NOT_OPEN)
    // The state a view shows is the one the engine holds until a batch settles: before a journaled
    // apply the stable snapshot, otherwise the db as it is now.
    const { generation, watermark, history } = this.#state
    const position: ReplicaPosition = { generation, watermark, history, checksum: history === null ? null : checksum(history) }
    // Never synced, the db holds no state of a primary: maybe nothing, maybe part of a first copy
    // (written in place, visible to a snapshot before its header is), maybe data it is to overwrite.
    const empty = generation === null
    const stable = this.#stable
    if (stable !== null) {
      stable.users++
      let released = false
      return {
        position,
        empty,
        snapshot: stable.snapshot,
        release: () => {
          if (released) return
          released = true
          stable.users--
          if (stable.done && stable.users === 0) void stable.snapshot.close()
        }
      }
    }
    const snapshot = this.#db.snapshot()
    return { snapshot, position, empty, release: () => void snapshot.close() }
  }

  /**
   * Salvages a replica whose LevelDB reports corruption (damaged table files): closes it, runs
   * LevelDB's repair on its directory (which keeps what can be read and drops the rest), opens it
   * again. Verification then finds what was lost and mends it. Only for classic-level dbs.
   */
  async salvage (): Promise<void> {
    const db = this.#db as unknown as { location?: unknown, constructor: { repair?: (location: string) => Promise<void> } }
    if (typeof db.constructor.repair !== 'function' || typeof db.location !== 'string') {
      throw new MirrorError('This replica db cannot be salvaged: only a classic-level directory can', codes.INVALID_OPTION)
    }
    await this.close()
    await db.constructor.repair(db.location)
    await this.open()
  }

  /** For verification: a fingerprint of each range of the replica's user data, at one state. */
  async fingerprint (ranges: KeyRangeBounds[]): Promise<Fingerprint[]> {
    const view = this.readView()
    try {
      const out: Fingerprint[] = []
      if (view.empty) return ranges.map(() => newFingerprint())
      for (const r of ranges) out.push(await fingerprintRange(this.#db, r.after, r.upto, view.snapshot))
      return out
    } finally {
      view.release()
    }
  }

  /** For verification: the entries of a range with their digests, `limit` (and `maxBytes`) at a time after `from`. */
  async digests (range: KeyRangeBounds, from: Buffer | null, limit: number, maxBytes?: number): Promise<{ entries: Array<[Buffer, Buffer]>, more: boolean }> {
    const view = this.readView()
    try {
      if (view.empty) return { entries: [], more: false }
      return await entryDigests(this.#db, range, from, limit, view.snapshot, maxBytes)
    } finally {
      view.release()
    }
  }

  /** Applies (or stages) one part; see {@link ReplicaAdapter.apply}. Serialized. */
  apply (input: BatchPart): Promise<PartAck> {
    const run = this.#queue.then(() => this.#apply(input))
    this.#queue = run.catch(() => {})
    return run
  }

  async #apply (input: BatchPart): Promise<PartAck> {
    if (!this.#open) throw new MirrorError('The replica is not open', codes.NOT_OPEN)
    if (this.#closing) throw new MirrorError('The replica is closing', codes.CLOSED)
    const part = validatePart(input)
    // A journaled apply that failed half way (an I/O error) is finished before anything else.
    if (this.#staged?.header.committed === true && this.#staged.held === null) await this.#applyJournal(this.#staged.header)
    const st = this.#state
    const ack = { watermark: st.watermark }
    const rejoining = !part.full && st.demoted !== null && (part.index === 0 ? part.rejoin !== undefined : this.#staged?.header.rejoin !== null)
    if (part.repair === true) {
      if (st.generation === null || st.demoted !== null || part.generation !== st.generation || part.to !== st.watermark) {
        throw bad(`a repair is for the replica's own position (seq ${st.watermark}), not seq ${part.to}`)
      }
    } else if (part.full) {
      if (part.generation === st.generation && part.to <= st.watermark) return ack
    } else if (rejoining) {
      if (part.index === 0 && part.rejoin!.fork > st.demoted!.head) throw bad(`the fork (seq ${part.rejoin!.fork}) is past this demoted primary's head (${st.demoted!.head})`)
    } else {
      if (st.demoted !== null) throw new MirrorError('This is a demoted primary: it rejoins with a rejoin batch from the fork, or a full copy', codes.GAP)
      if (st.generation === null) throw new MirrorError('This replica was never synced: it needs a full copy first', codes.GAP)
      if (part.to <= st.watermark) return ack
      if (part.index === 0 && part.from > st.watermark) {
        throw new MirrorError(`Batch (${part.from}, ${part.to}] would leave a gap after watermark ${st.watermark}; not applied`, codes.GAP)
      }
    }
    let header: JournalHeader
    if (part.index === 0) {
      if (part.full && this.#foreign !== null && part.overwrite !== true) {
        throw new MirrorError(this.#foreign === 'primary'
          ? 'This store is a primary\'s own store, not a replica: refusing to overwrite it (set overwrite to replace it)'
          : 'This store holds data that no primary of this line sent it: refusing to overwrite it (set overwrite to replace it)', codes.REPLICA_NOT_EMPTY)
      }
      // A demoted primary that gets a full copy, not a rejoin: its log could not name every write
      // it made after the fork, so the file saved at demotion may lack some. Its data is still
      // its own until the copy lands; save all of it first.
      if (part.full && st.demoted !== null && st.demoted.saved !== null) {
        // A store moved to another machine (under a server's --dir) may not find the directory
        // its file was named in at demotion: retried as a blip, the copy stalled for good.
        const saved = st.demoted.saved
        if (!existsSync(dirname(saved))) {
          throw new MirrorError(`This demoted primary must save every key to ${saved} (the file named at demote) before a full copy replaces its data, and ${dirname(saved)} does not exist here: create it (or put the file there), and the copy goes on`, codes.INVALID_OPTION)
        }
        await saveEveryKey(this.#db, saved, st.demoted.history, st.demoted.head)
      }
      header = firstHeader(part)
      // A replica that holds nothing has no state to keep readable while a copy lands: the copy is
      // written in place, once, instead of staged and then written again.
      header.inPlace = part.full && st.generation === null && st.demoted === null && this.#foreign === null
      // Started over, an in-place copy keeps its header until the new one replaces it: dropped
      // first, a crash in between would leave its data looking foreign (MIRROR_REPLICA_NOT_EMPTY).
      if (header.inPlace && this.#staged?.header.inPlace === true) this.#staged = null
      else await this.#dropStaged()
    } else {
      header = this.#follow(part)
      // The first pieces of a value were in memory only, and a restart lost them.
      if (header.inPlace && header.piece !== null && (this.#staged?.piece ?? null) === null) throw bad('the first pieces of this value were lost in a restart: the copy starts over')
    }
    header.piece = continuePieces(header.piece, part.ops, part.full && part.range === undefined && !header.copyDone)
    if (part.final && header.piece !== null) throw bad('the batch ends in the middle of a value')
    if (part.final && header.full && !header.copyDone) throw bad('a full batch cannot end before its copy reaches the end of the keyspace')
    if (part.final) header.history = nextHistory(header, st, part)
    header.committed = part.final
    if (header.inPlace) return await this.#writeInPlace(part, header)

    const staged: Staged = part.index === 0 ? { header, held: emptyHeld() } : { ...this.#staged!, header }
    if (staged.held !== null && !this.#hold(staged.held, part)) await this.#spill(staged)
    if (staged.held === null) {
      await this.#journal.stage(part.index, { range: part.range ?? null, ops: part.ops }, [{ type: 'put', key: metaKeys.journal, value: encodeJournal(header) }])
    }
    this.#staged = staged
    if (part.final) {
      if (staged.held === null || !(await this.#applyHeld(staged))) await this.#applyJournal(header)
    }
    return { watermark: this.#state.watermark }
  }

  // A part of a first copy written in place: the keys of its range it does not list deleted, its
  // ops written (a value in pieces once it is whole), the header with the last write, so a copy
  // cut short resumes after what landed. The final part writes the replica's state instead.
  async #writeInPlace (part: BatchPart, header: JournalHeader): Promise<PartAck> {
    if (part.range !== undefined) {
      for await (const gone of unlistedKeys(this.#db, part.range, part.ops)) await writeBatch(this.#db, gone.map((key) => ({ type: 'del', key })))
    }
    const before = part.index === 0 ? null : this.#staged?.piece ?? null
    // A copy of the chunks so far: a write that fails leaves the staged state as it was.
    const assembling = { piece: before === null ? null : { key: before.key, chunks: [...before.chunks] } }
    const ops: InnerOp[] = []
    for (const op of part.ops) {
      const whole = wholeOp(assembling, op)
      if (whole !== null) ops.push(whole)
    }
    if (part.final) ops.push(...this.#finishOps(header, true))
    else ops.push({ type: 'put', key: metaKeys.journal, value: encodeJournal(header) })
    await writeBatch(this.#db, ops)
    this.#staged = { header, held: null, piece: assembling.piece }
    if (part.final) await this.#settle(header)
    return { watermark: this.#state.watermark }
  }

  // The header after `part`, or an error if it does not follow the batch being received.
  #follow (part: BatchPart): JournalHeader {
    return followHeader(this.#staged?.header ?? null, part)
  }

  // Holds `part` in memory if it fits the bound (and the shared budget); false if it does not.
  #hold (held: Held, part: BatchPart): boolean {
    const bytes = opsBytes(part.ops) + 64 * (part.ops.length + 1)
    if (held.bytes + bytes > this.#maxApplyBytes) return false
    if (this.#memory !== null && !this.#memory.tryTake(bytes)) return false
    held.bytes += bytes
    const entry: StagedPart = { range: part.range ?? null, ops: [] }
    held.parts.push(entry)
    for (const op of part.ops) {
      if (held.piece !== null) {
        held.piece.chunks.push((op as { value: Buffer }).value)
        if (op.type === 'put' && op.more === true) continue
        held.parts[held.piece.part].ops.push({ type: 'put', key: held.piece.key, value: Buffer.concat(held.piece.chunks) })
        held.piece = null
      } else if (op.type === 'put' && op.more === true) {
        held.piece = { key: op.key, chunks: [op.value], part: held.parts.length - 1 }
      } else {
        entry.ops.push(op)
      }
    }
    return true
  }

  // The batch outgrew memory: stage what is held in the journal and go on there.
  async #spill (staged: Staged): Promise<void> {
    const held = staged.held!
    const { header } = staged
    const count = held.parts.length
    for (let i = 0; i < count; i++) {
      const part = held.parts[i]
      const ops = held.piece !== null && held.piece.part === i
        ? [...part.ops, { type: 'put' as const, key: held.piece.key, value: Buffer.concat(held.piece.chunks), more: true }]
        : part.ops
      // The header that goes with the last held part says how many are staged, as if they had come one by one.
      // (It is the commit record too when every part is held: the final part has arrived.)
      const also = i === count - 1 ? [{ type: 'put' as const, key: metaKeys.journal, value: encodeJournal({ ...header, parts: count, committed: header.committed && count === header.parts }) }] : []
      await this.#journal.stage(i, { range: part.range, ops }, also)
    }
    this.#giveBack(held)
    staged.held = null
  }

  // One atomic batch: the held ops, the deletes a full copy implies, the watermark. False if the
  // deletes outgrow memory (the batch is then spilled to the journal and applied from there).
  async #applyHeld (staged: Staged): Promise<boolean> {
    const held = staged.held!
    const ops: InnerOp[] = []
    let bytes = held.bytes
    for (const part of held.parts) {
      if (part.range !== null && part.range !== undefined) {
        for await (const gone of unlistedKeys(this.#db, part.range, part.ops)) {
          for (const key of gone) ops.push({ type: 'del', key })
          bytes += gone.reduce((n, k) => n + k.length + 64, 0)
          if (bytes > this.#maxApplyBytes) {
            await this.#spill(staged)
            return false
          }
        }
      }
      for (const op of part.ops) ops.push(op.type === 'put' ? { type: 'put', key: op.key, value: op.value } : op)
    }
    await writeBatch(this.#db, [...ops, ...this.#finishOps(staged.header, false)])
    this.#giveBack(held)
    await this.#settle(staged.header)
    return true
  }

  // Redo: apply every staged part in order, then the watermark; safe to repeat after a crash. A
  // committed batch is applied to the end even while closing: it is local work, and stopping half
  // way would leave the directory a mix of two states until the next open.
  async #applyJournal (header: JournalHeader): Promise<void> {
    this.#holdStable()
    if (!header.applying) {
      // From here on the data may be a mix: `mirror-level status` says so until the apply ends.
      header.applying = true
      await this.#db.put(metaKeys.journal, encodeJournal(header), BUFFERS)
    }
    // A part at a time, how far it got recorded with the part's last write: a failed apply goes on
    // from there when it is finished (an apply from the first part again, thousands of writes,
    // rarely got through a replica db that fails now and then).
    await this.#journal.apply(header.parts, () => {}, header.appliedParts, {
      ops: (next) => [{ type: 'put', key: metaKeys.journal, value: encodeJournal({ ...header, appliedParts: next }) }],
      done: (next) => { header.appliedParts = next }
    })
    await this.#db.batch(this.#finishOps(header, true), BUFFERS)
    // Only now: an apply that failed half way leaves the db a mix until it is finished, and readers
    // keep the state from before it until then.
    this.#releaseStable()
    await this.#settle(header)
    await this.#journal.clear()
  }

  // The ops that end a batch: the new state, the journal gone, and what overwriting replaces.
  #finishOps (header: JournalHeader, journaled: boolean): InnerOp[] {
    const ops: InnerOp[] = [{ type: 'put', key: metaKeys.replica, value: encodeReplicaState({ generation: header.generation, watermark: header.to, history: header.history, demoted: null }) }]
    if (journaled) ops.push({ type: 'del', key: metaKeys.journal })
    if (header.overwrite) for (const key of [metaKeys.head, metaKeys.history, metaKeys.origin]) ops.push({ type: 'del', key })
    // The file is narrowed once the batch has landed; landing with it, this says to, so a crash in
    // between (the file then still held every key the log named) narrows it at the next open.
    const narrow = this.#narrowing(header)
    if (narrow !== null) ops.push({ type: 'put', key: metaKeys.narrow, value: Buffer.from(JSON.stringify(narrow)) })
    return ops
  }

  #narrowing (header: JournalHeader): { path: string, fork: number, spans: boolean } | null {
    const saved = this.#state.demoted?.saved
    if (saved === null || saved === undefined || header.rejoin === null) return null
    const fork = header.rejoin
    const spans = this.#demotedRecords === null || this.#demotedRecords.some(([from, to]) => from < fork && fork < to)
    return { path: saved, fork, spans }
  }

  // Narrows the discarded-writes file the last rejoin left to narrow, if any.
  async #narrowSaved (): Promise<void> {
    const raw = await this.#db.get(metaKeys.narrow, BUFFERS)
    if (raw === undefined) return
    try {
      const { path, fork, spans } = JSON.parse(raw.toString()) as { path: string, fork: number, spans: boolean }
      trimDiscarded(path, fork, spans)
    } catch {
      // The file keeps every write the log named (a superset): nothing is lost if it cannot be narrowed.
    }
    await this.#db.del(metaKeys.narrow, BUFFERS)
  }

  async #settle (header: JournalHeader): Promise<void> {
    const demoted = this.#state.demoted
    this.#state = { generation: header.generation, watermark: header.to, history: header.history, demoted: null }
    this.#staged = null
    // What a primary's store kept for itself is gone with it: the log of the store it replaced.
    if ((header.overwrite && this.#foreign === 'primary') || demoted !== null) await this.#db.clear({ ...logRange, keyEncoding: 'buffer' })
    if (demoted !== null) await this.#narrowSaved()
    this.#demotedRecords = null
    if (header.full) this.#foreign = null
  }

  // Forgets the batch being received: in memory, or in the journal.
  async #dropStaged (): Promise<void> {
    const staged = this.#staged
    if (staged === null) return
    this.#staged = null
    if (staged.held !== null) return this.#giveBack(staged.held)
    await this.#db.del(metaKeys.journal, BUFFERS)
    await this.#journal.clear()
  }

  #giveBack (held = this.#staged?.held ?? null): void {
    if (held === null) return
    this.#memory?.give(held.bytes)
    held.bytes = 0
    held.parts = []
    held.piece = null
  }

  #holdStable (): void {
    // Still held since an apply that failed: the db already holds part of the batch.
    if (this.#stable !== null || this.#db.supports.explicitSnapshots !== true) return
    this.#stable = { snapshot: this.#db.snapshot(), users: 0, done: false }
  }

  #releaseStable (): void {
    const stable = this.#stable
    if (stable === null) return
    this.#stable = null
    stable.done = true
    if (stable.users === 0) void stable.snapshot.close()
  }
}

/** What {@link ReplicaEngine.readView} gives a reader. */
export interface ReadView {
  snapshot: AbstractSnapshot
  position: ReplicaPosition
  /** The replica was never synced (or is a demoted primary waiting to rejoin): it holds no state of a primary, show nothing. */
  empty: boolean
  release: () => void
}

function emptyHeld (): Held {
  return { parts: [], bytes: 0, piece: null }
}
