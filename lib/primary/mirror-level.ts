import { AbstractIterator, AbstractLevel, type AbstractSnapshot } from 'abstract-level'
import { MirrorError, codes } from '../errors'
import { decodeHistory, encodeHistory, newGeneration, type HistoryEntry } from '../history'
import { HEAD_KEY, encodeHead } from '../log/head'
import { BUFFERS, type InnerDb, type InnerOp } from '../inner'
import { isReserved, metaKeys, reservedEnd, reservedStart } from '../keyspace'
import type { ReplicaAdapter } from '../adapter'
import { compactionStep, storedHead, truncationStep } from '../log/records'
import { Replication, type Mode, type ReplicaStatus } from '../replication/replication'
import type { VerifyOptions, VerifyReport } from '../replication/verifier'
import { UserIterator, type InnerIterator } from '../user-iterator'
import { MirrorChainedBatch } from './mirror-chained-batch'
import { captureOps } from './capture'
import { resolveMirrorOptions, type MirrorLevelOptions, type ResolvedMirrorOptions } from './mirror-options'
import { decodeOrigin, encodeOrigin, newOrigin, type Origin } from '../origin'
import { MirrorSnapshot } from './mirror-snapshot'
import { describe, knownOptions, nonNegativeInteger } from '../options'
import { Pipeline, type MaintenanceStep } from '../log/pipeline'
import { SessionRecords } from '../log/session-records'

const ORIGIN_KEY = metaKeys.origin
const HISTORY_KEY = metaKeys.history

/** What `status()` returns. */
export interface MirrorStatus {
  /** The last committed seq and the log's size. */
  head: MirrorHead
  mode: Mode
  /** This primary's current generation. */
  generation: string
  replicas: ReplicaStatus[]
  /**
   * The recent writes held in memory so that replicas that keep up are shipped them without a
   * read of LevelDB: how many seqs, and their bytes of keys and values (at most 16 MiB). Empty
   * while every replica is away.
   */
  tail: { seqs: number, bytes: number }
}

/** The primary's position: the last committed seq and the log's size. */
export interface MirrorHead {
  seq: number
  logBytes: number
}

type Op = { type: 'put', key: Buffer, value: Buffer } | { type: 'del', key: Buffer }
type ReadOptions = Record<string, unknown> & { snapshot?: AbstractSnapshot }

const MANY = 1000
// abstract-level's public iterator() sets these on the options of _iterator(); _clear() builds its own
const ITERATOR_KEY_ENCODING = (AbstractIterator as unknown as { keyEncoding: symbol }).keyEncoding
const ITERATOR_VALUE_ENCODING = (AbstractIterator as unknown as { valueEncoding: symbol }).valueEncoding

// How long a failed log truncation waits before it is tried again.
const TRUNCATE_RETRY_MS = 2000

/**
 * An abstract-level database that wraps another one (`inner`) and records, atomically with every
 * write, which keys it changed, in commit order. See the README for the guarantees.
 *
 * MirrorLevel owns the inner db: `open()` opens it (it may already be open or opening) and `close()`
 * closes it. Write only through the MirrorLevel: a write made on the inner db directly is in no log
 * record and would never be mirrored.
 */
export class MirrorLevel<KDefault = string, VDefault = string> extends AbstractLevel<Buffer, KDefault, VDefault> {
  #inner: InnerDb
  #pipeline: Pipeline | null = null
  #options: ResolvedMirrorOptions
  #origin: Origin | null = null
  #truncateTo = 0
  // Records ending at or before this seq are deleted: log maintenance reads after it.
  #truncatedThrough = -1
  #records: SessionRecords | null = null
  #history: HistoryEntry[] = []
  #replication: Replication | null = null

  constructor (inner: InnerDb, options: MirrorLevelOptions<KDefault, VDefault> = {}) {
    const resolved = resolveMirrorOptions(inner, options)
    const supports = inner.supports as typeof inner.supports & { getSync?: boolean }
    super({
      encodings: { buffer: true },
      seek: true,
      implicitSnapshots: supports.implicitSnapshots,
      explicitSnapshots: supports.explicitSnapshots,
      permanence: supports.permanence,
      has: true,
      getSync: supports.getSync === true,
      createIfMissing: false,
      errorIfExists: false
    } as Record<string, unknown>, resolved.forward)
    this.#inner = inner
    this.#options = resolved
  }

  /** The last committed seq and the log's size, or null while not open. */
  get head (): MirrorHead | null {
    return this.#pipeline === null ? null : { ...this.#pipeline.head }
  }

  /** What was recorded when this store was first wrapped, or null while not open. */
  get origin (): Origin | null {
    return this.#origin === null ? null : { ...this.#origin }
  }

  async _open (): Promise<void> {
    // One adapter serves one primary: a second would overwrite the replica under the first.
    for (const adapter of this.#options.adapters) {
      const owner = owners.get(adapter)
      if (owner !== undefined && owner !== this && owner.status !== 'closed') {
        throw new MirrorError(`replica '${adapter.options?.name ?? adapter.name}' already belongs to another open MirrorLevel; give each primary its own adapter`, codes.INVALID_OPTION)
      }
    }
    for (const adapter of this.#options.adapters) owners.set(adapter, this)
    try {
      await this.#inner.open()
    } catch (err) {
      // abstract-level wraps what we throw in its own "failed to open": pass on the inner db's
      // reason (LEVEL_LOCKED: another process has the directory), as the bare store would show it.
      const cause = (err as { code?: string, cause?: unknown }).cause
      throw (err as { code?: string }).code === 'LEVEL_DATABASE_NOT_OPEN' && cause instanceof Error ? cause : err
    }
    try {
      await this.#load()
    } catch (err) {
      // Whatever went wrong, the inner db is not left open (and locked) behind a failed open.
      this.#pipeline = null
      this.#replication = null
      await this.#inner.close().catch(() => {})
      throw err
    }
  }

  async #load (): Promise<void> {
    const [head, origin, history, replica, journal, restoring] = await this.#inner.getMany([HEAD_KEY, ORIGIN_KEY, HISTORY_KEY, metaKeys.replica, metaKeys.journal, metaKeys.restore], BUFFERS)
    if (restoring !== undefined) {
      throw new MirrorError('A restore into this store did not finish: run the same `mirror-level restore` again to complete it', codes.WRONG_ROLE)
    }
    if (replica !== undefined || journal !== undefined) {
      throw new MirrorError('This store holds a replica\'s state: wrapping it as a primary would orphan its journal and fork its history. ' +
        'See `npx mirror-level status DIR`; to make the replica a primary, promote it (`npx mirror-level promote DIR`)', codes.IS_REPLICA)
    }
    const created = origin === undefined
    if (created) {
      await this.#initialise()
    } else {
      this.#origin = decodeOrigin(origin)
      if (head === undefined || history === undefined) throw new MirrorError('The stored head or history is missing', codes.CORRUPT)
      this.#history = decodeHistory(history)
    }
    const stored = head === undefined ? { seq: 0, logBytes: 0 } : (await storedHead({ db: this.#inner }))!
    const pipeline = new Pipeline(this.#inner, stored, {
      maxGroupOps: this.#options.maxGroupOps,
      maxGroupBytes: this.#options.maxGroupBytes,
      onCommit: (seq, h, bytes, ops, recordBytes) => {
        this.#records?.committed(seq, recordBytes)
        this.#afterCommit(h.logBytes)
        this.#replication?.onCommit(seq, bytes, ops)
      }
    })
    this.#pipeline = pipeline
    // The first write after this open starts a new history entry, atomically with it: a copy of
    // this store opened elsewhere writes under another entry, so its positions never pass for ours.
    // (A store created by this open already starts with an entry of its own.)
    if (!created) {
      const next: HistoryEntry[] = [...this.#history, [newGeneration(), stored.seq]]
      pipeline.withNextCommit([{ type: 'put', key: HISTORY_KEY, value: encodeHistory(next) }], () => { this.#history = next })
    }
    this.#truncateTo = 0
    this.#truncatedThrough = -1
    // Only replicas truncate the log: without them the sizes would be kept for nothing.
    this.#records = this.#options.adapters.length > 0 && this.#options.truncateLog ? new SessionRecords(stored.seq + 1) : null
    if (stored.logBytes > this.#options.logBudget) this.#afterCommit(stored.logBytes)
    this.#replication = new Replication({
      inner: this.#inner,
      history: () => this.#history,
      head: () => pipeline.head.seq,
      truncate: (seq) => this.#truncate(seq),
      emit: (event, payload) => this.#emitSafely(event, payload)
    }, this.#options.adapters, this.#options)
    this.#replication.start()
  }

  // The first wrap of a store: record whether it already held data the log knows nothing of.
  async #initialise (): Promise<void> {
    const below = await this.#inner.keys({ lt: reservedStart, limit: 1, keyEncoding: 'buffer' }).all()
    const above = below.length > 0 ? [] : await this.#inner.keys({ gte: reservedEnd, limit: 1, keyEncoding: 'buffer' }).all()
    this.#origin = newOrigin(below.length + above.length > 0)
    const generation = newGeneration()
    this.#history = [[generation, 0]]
    await this.#inner.batch([
      { type: 'put', key: HEAD_KEY, value: encodeHead({ seq: 0, logBytes: 0 }) },
      { type: 'put', key: HISTORY_KEY, value: encodeHistory(this.#history) },
      { type: 'put', key: ORIGIN_KEY, value: encodeOrigin(this.#origin) }
    ], BUFFERS)
  }

  /**
   * Closes the database, shipping first what replicas lack for up to the `closeTimeout` option.
   * Takes no options: `close({ timeout })` is refused (`MIRROR_INVALID_OPTION`) rather than ignored.
   */
  override close (...args: unknown[]): Promise<void> {
    // (A function is let through as abstract-level lets it: a callback of its older API, ignored.)
    if (args.length > 0 && args[0] !== undefined && typeof args[0] !== 'function') {
      return Promise.reject(new MirrorError(`close() takes no options (got ${describe(args[0])}): how long it may ship to replicas is the constructor's 'closeTimeout' option`, codes.INVALID_OPTION))
    }
    // Its own promise, not one more tick: abstract-level's tests check the order of open and close.
    return super.close()
  }

  async _close (): Promise<void> {
    if (this.#pipeline !== null) await this.#pipeline.idle()
    if (this.#replication !== null) await this.#replication.close(this.#options.closeTimeout)
    this.#replication = null
    if (this.#pipeline !== null) await this.#pipeline.idle()
    this.#pipeline = null
    await this.#inner.close()
  }

  /**
   * Where the primary and each replica stand: state, watermark, lag in seqs, bytes and ms, and
   * why a replica is down or refused. Throws `MIRROR_NOT_OPEN` while closed. (Not `status()`:
   * abstract-level's `db.status` is the open/closed state.)
   */
  mirrorStatus (): MirrorStatus {
    if (this.#pipeline === null || this.#replication === null) throw new MirrorError('The database is not open', codes.NOT_OPEN)
    return {
      head: { ...this.#pipeline.head },
      mode: this.#options.mode,
      generation: this.#history[this.#history.length - 1][0],
      replicas: this.#replication.status(),
      tail: this.#replication.tail
    }
  }

  /**
   * Resolves once every replica has applied every write committed before the call. With
   * `timeout` (ms), rejects with `MIRROR_REPLICA_TIMEOUT` after it instead of waiting on.
   */
  async replicated (options: { timeout?: number } = {}): Promise<void> {
    if (typeof options !== 'object' || options === null) {
      throw new MirrorError(`replicated(): options must be an object such as { timeout: 1000 }, got ${describe(options)}`, codes.INVALID_OPTION)
    }
    knownOptions('replicated()', options, ['timeout'])
    const timeout = nonNegativeInteger('replicated()', 'timeout', options.timeout, 0)
    if (this.status === 'opening') await this.open()
    if (this.#replication === null) throw new MirrorError('The database is not open', codes.NOT_OPEN)
    await this.#replication.replicated(timeout)
  }

  /**
   * Proves that a replica equals the primary, and mends only what differs: the replica is brought
   * to a snapshot's head and held there (not the others, not the app's writes) while range
   * fingerprints of both are compared; differing ranges are split until their keys are compared.
   * With `repair`, the differing keys are set to the snapshot's values in one atomic step on the
   * replica (its watermark does not move). With no name, every replica, one after the other.
   */
  async verify (name: string, options?: VerifyOptions): Promise<VerifyReport>
  async verify (options?: VerifyOptions): Promise<VerifyReport[]>
  async verify (nameOrOptions?: string | VerifyOptions, maybeOptions?: VerifyOptions): Promise<VerifyReport | VerifyReport[]> {
    const name = typeof nameOrOptions === 'string' ? nameOrOptions : undefined
    // verify(undefined, options) is every replica with those options, not none of them.
    const options = (typeof nameOrOptions === 'string' || nameOrOptions === undefined ? maybeOptions : nameOrOptions) ?? {}
    if (nameOrOptions !== undefined && typeof nameOrOptions !== 'string' && maybeOptions !== undefined) {
      throw new MirrorError('verify(): give a replica name and options, or options alone', codes.INVALID_OPTION)
    }
    if (typeof options !== 'object' || options === null) throw new MirrorError(`verify(): options must be an object, got ${describe(options)}`, codes.INVALID_OPTION)
    knownOptions('verify()', options, ['repair', 'onProgress', 'timeout'])
    if (options.repair !== undefined && typeof options.repair !== 'boolean') throw new MirrorError('verify(): option \'repair\' must be a boolean', codes.INVALID_OPTION)
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw new MirrorError('verify(): option \'onProgress\' must be a function', codes.INVALID_OPTION)
    nonNegativeInteger('verify()', 'timeout', options.timeout, 0)
    if (this.status === 'opening') await this.open()
    if (this.#replication === null) throw new MirrorError('The database is not open', codes.NOT_OPEN)
    const all = this.#replication.replicators
    if (name !== undefined) {
      const r = all.find((x) => x.name === name)
      if (r === undefined) throw new MirrorError(`verify(): no replica is named '${name}' (replicas: ${all.map((x) => x.name).join(', ') || 'none'})`, codes.INVALID_OPTION)
      return await this.#replication.verify(r, options)
    }
    const reports: VerifyReport[] = []
    for (const r of all) reports.push(await this.#replication.verify(r, options))
    return reports
  }

  // Deletes records every replica has applied. A promoted or restored store keeps them from where
  // it took over (within the budget): the primary it replaced may come back, demoted, and rejoin
  // with the keys changed since then instead of a full copy.
  #truncate (seq: number, retry = true): void {
    if (!this.#options.truncateLog) return
    const tookOver = this.#origin?.promoted?.seq ?? this.#origin?.restored?.seq ?? Infinity
    this.#truncateTo = Math.max(this.#truncateTo, Math.min(seq, tookOver))
    // A truncation that failed is tried once more a while later, writes or not (else it would wait
    // for the replicas to apply another 1024 seqs); failing again, it waits for that.
    const again = retry ? () => setTimeout(() => this.#truncate(this.#truncateTo, false), TRUNCATE_RETRY_MS).unref() : undefined
    this.#maintain('truncation', again, async (head) => {
      // Records this open wrote are deleted without reading them back; older ones are read.
      const known = this.#records?.truncation(head.logBytes, this.#truncatedThrough, this.#truncateTo, 10_000)
      const step = known !== undefined ? known : await truncationStep(this.#inner, head, this.#truncatedThrough, this.#truncateTo, 10_000)
      // Only once its deletes have landed: a step that failed is tried again, not skipped.
      return step === null ? null : { ...step, committed: () => { this.#truncatedThrough = step.through } }
    })
  }

  // Merges old records while the log is over its budget.
  #afterCommit (logBytes: number): void {
    if (logBytes <= this.#options.logBudget) return
    this.#maintain('compaction', undefined, async (head) => {
      if (head.logBytes <= this.#options.logBudget) return null
      const step = await compactionStep(this.#inner, head, { budget: this.#options.logBudget, maxRecordsPerStep: 10_000, after: this.#truncatedThrough })
      // A step that cannot shrink the log would repeat forever.
      if (step === null || step.logBytes >= head.logBytes) return null
      // It rewrites records: their sizes as this open wrote them no longer hold.
      this.#records?.forget()
      return step
    })
  }

  #maintain (what: string, failed: (() => void) | undefined, step: MaintenanceStep): void {
    // Closed: the next open truncates or compacts what is due.
    if (this.#pipeline === null) return
    this.#pipeline.maintain(what, step).catch((err) => {
      // The log stays correct, only larger than it needs to be; report it, the next commit retries.
      this.#report(new MirrorError(`Log ${what} failed`, codes.WRITE_FAILED, { cause: err }))
      failed?.()
    })
  }

  #report (err: Error): void {
    try {
      if (this.listenerCount('error') > 0) return void this.emit('error', err)
    } catch {}
    process.emitWarning(err)
  }

  // A listener that throws must not reach the replicator (or take the process down): reported instead.
  #emitSafely (event: string, payload: unknown): void {
    try {
      this.emit(event, payload)
    } catch (err) {
      this.#report(new MirrorError(`A '${event}' listener threw; mirror-level went on`, codes.LISTENER, { cause: err }))
    }
  }

  #write (ops: InnerOp[], options: { sync?: unknown } | undefined): Promise<number> {
    for (const op of ops) {
      if (isReserved(op.key)) {
        throw new MirrorError(`Key 0x${op.key.toString('hex')} is in mirror-level's reserved range (0xFF 'mirror-level/'); nothing was written`, codes.RESERVED_KEY)
      }
    }
    return this.#pipeline!.write(ops, options?.sync === true)
  }

  // The local commit, then whatever the mode waits for. Not an async function: in async mode the
  // caller awaits the pipeline's own promise, with no extra hops on the hot path.
  #commit (ops: InnerOp[], options: { sync?: unknown } | undefined): Promise<unknown> {
    const committed = this.#write(ops, options)
    return this.#options.mode === 'async' ? committed : committed.then((seq) => this.#replication!.waitFor(seq))
  }

  // Writes made before the db is open wait in abstract-level's deferred queue with the caller's
  // Buffers; copy those at the call too. (Open, _put and friends copy: see below.)
  /* eslint-disable @typescript-eslint/no-explicit-any */
  override put (key: any, value: any, options?: any): Promise<void> {
    return this.status === 'open' ? super.put(key, value, options) : super.put(copied(key), copied(value), options)
  }

  override del (key: any, options?: any): Promise<void> {
    return this.status === 'open' ? super.del(key, options) : super.del(copied(key), options)
  }

  override batch (...args: any[]): any {
    if (args.length === 0) return super.batch()
    const [operations, options] = args
    if (this.status === 'open' || !Array.isArray(operations)) return super.batch(operations, options)
    return super.batch(operations.map((op: any) => {
      if (typeof op !== 'object' || op === null || !(op.key instanceof Uint8Array || op.value instanceof Uint8Array)) return op
      const copy = { ...op, key: copied(op.key) }
      if ('value' in op) copy.value = copied(op.value)
      return copy
    }), options)
  }
  /* eslint-enable @typescript-eslint/no-explicit-any */

  // Keys and values are copied here, when the write is made: it commits later, and a caller may
  // reuse its Buffer as soon as the call returns (classic-level captures at call time too).
  _put (key: Buffer, value: Buffer, options?: { sync?: unknown }): Promise<unknown> {
    return this.#commit([{ type: 'put', key: Buffer.from(key), value: Buffer.from(value) }], options)
  }

  _del (key: Buffer, options?: { sync?: unknown }): Promise<unknown> {
    return this.#commit([{ type: 'del', key: Buffer.from(key) }], options)
  }

  _batch (operations: Op[], options?: { sync?: unknown }): Promise<unknown> {
    return this.#commit(captureOps(operations), options)
  }

  _chainedBatch (): MirrorChainedBatch {
    return new MirrorChainedBatch(this, (ops, options) => this.#commit(ops, options))
  }

  #readOptions (options: ReadOptions | undefined): ReadOptions {
    const snapshot = options?.snapshot
    return { ...options, ...BUFFERS, snapshot: snapshot instanceof MirrorSnapshot ? snapshot.inner : undefined }
  }

  async _get (key: Buffer, options?: ReadOptions): Promise<Buffer | undefined> {
    if (isReserved(key)) return undefined
    return await this.#inner.get(key, this.#readOptions(options))
  }

  _getSync (key: Buffer, options?: ReadOptions): Buffer | undefined {
    if (isReserved(key)) return undefined
    return this.#inner.getSync(key, this.#readOptions(options))
  }

  async _getMany (keys: Buffer[], options?: ReadOptions): Promise<Array<Buffer | undefined>> {
    const values: Array<Buffer | undefined> = await this.#inner.getMany(keys, this.#readOptions(options))
    for (let i = 0; i < keys.length; i++) if (isReserved(keys[i])) values[i] = undefined
    return values
  }

  async _has (key: Buffer, options?: ReadOptions): Promise<boolean> {
    if (isReserved(key)) return false
    const read = this.#readOptions(options)
    if (this.#inner.supports.has) return await this.#inner.has(key, read)
    return (await this.#inner.get(key, read)) !== undefined
  }

  async _hasMany (keys: Buffer[], options?: ReadOptions): Promise<boolean[]> {
    const read = this.#readOptions(options)
    const found: boolean[] = this.#inner.supports.has
      ? await this.#inner.hasMany(keys, read)
      : (await this.#inner.getMany(keys, read)).map((v: unknown) => v !== undefined)
    for (let i = 0; i < keys.length; i++) if (isReserved(keys[i])) found[i] = false
    return found
  }

  _iterator (options: Record<string, unknown>): UserIterator<KDefault, VDefault> {
    return new UserIterator(this, options, this.#innerIterator(options, options.values !== false))
  }

  #innerIterator (options: Record<string, unknown>, values: boolean): InnerIterator {
    const { limit, keys, keyEncoding, valueEncoding, ...rest } = options
    return this.#inner.iterator({
      ...this.#readOptions(rest as ReadOptions),
      keys: true,
      values
    }) as unknown as InnerIterator
  }

  // Not atomic (abstract-level allows that): deletes in logged batches of MANY keys each.
  async _clear (options: Record<string, unknown>): Promise<void> {
    const limit = typeof options.limit === 'number' && options.limit >= 0 ? options.limit : Infinity
    const it = new UserIterator<Buffer, Buffer>(this, {
      ...options,
      limit: -1,
      [ITERATOR_KEY_ENCODING]: this.keyEncoding('buffer'),
      [ITERATOR_VALUE_ENCODING]: this.valueEncoding('buffer')
    }, this.#innerIterator(options, false))
    let cleared = 0
    try {
      while (cleared < limit) {
        const entries = await it.nextv(Math.min(MANY, limit - cleared))
        if (entries.length === 0) break
        await this.#commit(entries.map(([key]) => ({ type: 'del', key })), undefined)
        cleared += entries.length
      }
    } finally {
      await it.close()
    }
  }

  _snapshot (options: object): MirrorSnapshot {
    return new MirrorSnapshot(options, this.#inner.snapshot())
  }
}

function copied<T> (x: T): T {
  return (x instanceof Uint8Array ? Buffer.from(x) : x) as T
}

// Which open MirrorLevel each adapter serves.
const owners = new WeakMap<ReplicaAdapter, { readonly status: string }>()
