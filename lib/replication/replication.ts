import type { ReplicaAdapter } from '../adapter'
import { MirrorError, codes, describeError, telling } from '../errors'
import { generationAt, type HistoryEntry } from '../history'
import { verifyReplica, type VerifyOptions, type VerifyReport } from './verifier'
import type { InnerDb, InnerOp } from '../inner'
import { ValueTail } from './tail'
import { CommitTimes } from './commit-times'
import { Replicator, resolveReplicaOptions, type ReplicaState, type ReplicatorHost } from './replicator'

/** When a write's promise resolves (HAST's names). */
export type Mode = 'async' | 'memsync' | 'fullsync'

/** What a sync-mode write does while a replica is down: go on without it, or wait for it. */
export type OnReplicaDown = 'degrade' | 'block'

/** One replica in `status()`. */
export interface ReplicaStatus {
  name: string
  state: ReplicaState
  /** The replica holds some real state of the primary (false until its first full copy lands). */
  consistent: boolean
  /** The seq of the primary state the replica holds (-1 until it has reported). */
  watermark: number
  /** The primary's head. */
  head: number
  lag: {
    /** Committed seqs the replica does not hold yet. */
    seqs: number
    /** Bytes of keys and values written in those seqs (a lower bound after a long outage). */
    bytes: number
    /** Age of the oldest write the replica does not hold, in ms. 0 when it holds them all. */
    ms: number
  }
  /** Why it is down or refused, if it is. */
  error: string | null
  errorCode: string | null
  /** Why it gets what it gets, when that is worth saying (a full copy instead of a rejoin, an overwrite). */
  reason: string | null
  /**
   * The batch being shipped to it, while one is: from its watermark to `to`, a full copy or not;
   * `staged`, the parts the replica already held of it when it resumed (0 for a fresh batch); and
   * the parts the replica has acknowledged, their ops and bytes of keys and values, and the ms,
   * since it (re)started, as the `replica-batch` event counts them. The batch lands whole when its
   * last part is applied; until then `watermark` and `lag` stay where they were.
   */
  batch: { from: number, to: number, full: boolean, staged: number, parts: number, ops: number, bytes: number, ms: number } | null
}

/** Payload of the `replica-batch` event. */
export interface ReplicaBatchEvent {
  name: string
  from: number
  to: number
  full: boolean
  parts: number
  ops: number
  bytes: number
  /** For a full copy where a rejoin or an incremental batch was expected: why. */
  reason?: string
}

export interface ReplicationHost {
  readonly inner: InnerDb
  history (): HistoryEntry[]
  head (): number
  /** Deletes log records that every replica has applied (records ending at or before `seq`). */
  truncate (seq: number): void
  emit (event: string, payload: unknown): void
}

interface Waiter {
  seq: number
  resolve: () => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout | null
  /** Wait for every replica, whatever its state (replicated(), and 'block' mode). */
  all: boolean
  applied: boolean
}

const MAX_COMMITS = 100_000
const TAIL_BYTES = 16 * 1024 * 1024
const TRUNCATE_SEQS = 1024
const TRUNCATE_MS = 2000

/** Checks every adapter's common options and that names are unique; throws a coded error. */
export function validateReplicas (adapters: ReplicaAdapter[]): void {
  const names = new Set<string>()
  adapters.forEach((adapter, i) => {
    if (adapters.indexOf(adapter) !== i) throw new MirrorError(`replicas[${adapters.indexOf(adapter)}] and replicas[${i}] are the same adapter: give each replica its own`, codes.INVALID_OPTION)
    const { name } = resolveReplicaOptions(adapter, i)
    if (names.has(name)) throw new MirrorError(`Two replicas are named '${name}'`, codes.INVALID_OPTION)
    names.add(name)
  })
}

/**
 * Replication policy in one place: a replicator per adapter, the write modes, `replicated()`,
 * status and lag, events, and which log records may go.
 */
export class Replication {
  readonly replicators: Replicator[]
  #host: ReplicationHost
  #mode: Mode
  #onDown: OnReplicaDown
  #timeout: number
  #waiters: Waiter[] = []
  // Recent commits (seq, time, cumulative bytes), for lag in ms and bytes; trimmed to what the
  // slowest replica still lacks and capped, so it stays bounded whatever the backlog.
  #commits = new CommitTimes(MAX_COMMITS)
  #bytes = 0
  #truncatedTo = 0
  #truncatedAt = 0
  #truncateTimer: NodeJS.Timeout | null = null
  #closing = false
  #verifyTimers: NodeJS.Timeout[] = []
  // The ops of recent seqs, for replicas that keep up (see ValueTail).
  #tail = new ValueTail(TAIL_BYTES)

  constructor (host: ReplicationHost, adapters: ReplicaAdapter[], options: { mode: Mode, onReplicaDown: OnReplicaDown, replicaTimeout: number }) {
    this.#host = host
    this.#mode = options.mode
    this.#onDown = options.onReplicaDown
    this.#timeout = options.replicaTimeout
    validateReplicas(adapters)
    const self = this
    const replicatorHost: ReplicatorHost = {
      inner: host.inner,
      tail: this.#tail,
      history: () => host.history(),
      head: () => host.head(),
      urgent () { return self.#waiters.length > 0 },
      changed: () => this.#changed(),
      batchShipped: (r, info) => host.emit('replica-batch', { name: r.name, ...info, ...(info.full && r.reason !== null ? { reason: r.reason } : {}) } satisfies ReplicaBatchEvent),
      stateChanged: (r, previous) => this.#stateChanged(r, previous),
      failed: (r, error, attempt) => host.emit('replica-error', { name: r.name, error, attempt })
    }
    this.replicators = adapters.map((adapter, i) => new Replicator(adapter, resolveReplicaOptions(adapter, i), replicatorHost))
  }

  get mode (): Mode { return this.#mode }

  start (): void {
    // The writes before this open have no times or sizes here: the open stands in for them, so a
    // replica behind it shows a lag of at least the time since the open (not 0).
    this.#commits.add(this.#host.head(), Date.now(), 0)
    for (const r of this.replicators) {
      r.start()
      if (r.options.verifyEvery > 0) {
        const timer = setInterval(() => {
          // A periodic check that cannot run now (the replica is down) waits for the next period.
          this.verify(r, { repair: r.options.verifyRepair }).catch(() => {})
        }, r.options.verifyEvery)
        timer.unref()
        this.#verifyTimers.push(timer)
      }
    }
  }

  /**
   * Verifies `r` (see `db.verify()`): brings it to a snapshot's head, holds shipping to it while
   * comparing it with that snapshot, repairs if asked, emits `replica-verify` with the report.
   */
  async verify (r: Replicator, options: VerifyOptions): Promise<VerifyReport> {
    const timeout = options.timeout ?? 30_000
    // A replica whose LevelDB cannot even open its own files is salvaged first, when asked to repair.
    if (options.repair === true && r.state === 'failed' && telling(r.lastError) === 'LEVEL_CORRUPTION' && r.adapter.salvage !== undefined) {
      await r.adapter.salvage()
      r.notify()
      for (const end = Date.now() + timeout; !r.up && Date.now() < end;) await new Promise((resolve) => setTimeout(resolve, 20))
    }
    let report: VerifyReport
    try {
      report = await r.runHeld(
        (source, seq) => verifyReplica(source, seq, generationAt(this.#host.history(), seq), r.adapter, r.name, r.partLimits, options),
        timeout
      )
    } catch (err) {
      throw verifyFailed(r.name, err)
    }
    this.#host.emit('replica-verify', report)
    return report
  }

  /** A group committed at `seq` with `bytes` of user data. */
  onCommit (seq: number, bytes: number, ops: InnerOp[]): void {
    if (this.replicators.length === 0) return
    // While every replica is away the tail serves nobody: one that comes back after more writes
    // than the tail holds reads them from LevelDB anyway. Held anyway, it was 16 MiB of values
    // (and their objects) in memory for the whole outage and the catch-up after it.
    if (this.replicators.some((r) => r.up)) this.#tail.push(seq, ops, bytes + ops.length * 16)
    else this.#tail.clear()
    this.#bytes += bytes
    this.#commits.add(seq, Date.now(), this.#bytes)
    for (const r of this.replicators) r.committed()
  }

  /** Resolves when the write at `seq` is as durable as the mode promises (invariant 5). */
  waitFor (seq: number): Promise<void> {
    if (this.#mode === 'async' || this.replicators.length === 0) return Promise.resolve()
    return this.#wait(seq, this.#onDown === 'block', this.#mode === 'fullsync', this.#onDown === 'block' ? this.#timeout : 0)
  }

  /** Resolves once every replica has applied every write committed before the call. */
  replicated (timeout = 0): Promise<void> {
    return this.#wait(this.#host.head(), true, true, timeout)
  }

  #wait (seq: number, all: boolean, applied: boolean, timeout: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { seq, resolve, reject, timer: null, all, applied }
      if (this.#done(waiter)) return resolve()
      if (timeout > 0) {
        waiter.timer = setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter)
          const behind = this.replicators.filter((r) => this.#progress(r, applied) < seq).map((r) => `${r.name} (${r.state}, at ${r.watermark})`)
          reject(new MirrorError(`Replicas did not ${applied ? 'apply' : 'receive'} seq ${seq} within ${timeout} ms: ${behind.join(', ')}; the write itself is committed locally`, codes.REPLICA_TIMEOUT))
        }, timeout)
      }
      this.#waiters.push(waiter)
      for (const r of this.replicators) r.notify()
    })
  }

  #progress (r: Replicator, applied: boolean): number {
    return applied ? (r.consistent ? r.watermark : -1) : (r.consistent ? r.received : -1)
  }

  #done (w: Waiter): boolean {
    for (const r of this.replicators) {
      // 'degrade': a replica known to be down or refused does not hold writes up.
      if (!w.all && !r.up) continue
      if (this.#progress(r, w.applied) < w.seq) return false
    }
    // Every replica that counts holds the write (under 'degrade', none counting means degraded).
    return true
  }

  #changed (): void {
    if (this.#waiters.length > 0) {
      const left: Waiter[] = []
      for (const w of this.#waiters) {
        if (this.#done(w)) {
          if (w.timer !== null) clearTimeout(w.timer)
          w.resolve()
        } else {
          left.push(w)
        }
      }
      this.#waiters = left
    }
    this.#trim()
  }

  #stateChanged (r: Replicator, previous: ReplicaState): void {
    if (r.state === 'down' || r.state === 'refused' || r.state === 'failed') {
      this.#host.emit('replica-down', { name: r.name, state: r.state, error: r.lastError })
    } else if ((previous === 'connecting' || previous === 'down' || previous === 'refused' || previous === 'failed') && r.state !== 'closed') {
      this.#host.emit('replica-up', { name: r.name, watermark: r.watermark, consistent: r.consistent })
    }
    this.#changed()
  }

  // Log records every replica has applied can go, and lag history they all have.
  #trim (): void {
    // The tail keeps what the slowest replica that uses it (a consistent one) has not applied.
    const using = this.replicators.filter((r) => r.consistent)
    if (using.length > 0) this.#tail.trim(Math.min(...using.map((r) => r.watermark)))
    let need = Infinity
    for (const r of this.replicators) {
      if (r.watermark < 0 && r.pendingCopy === null) return // not heard from: it may need anything
      const own = r.consistent ? r.watermark : Infinity
      need = Math.min(need, own, r.pendingCopy ?? Infinity)
    }
    if (need === Infinity || this.replicators.length === 0) return
    // A replica without a consistent state (a first copy in flight) lacks every commit: its lag
    // counts from the open, so the history keeps its oldest entries while there is one.
    if (this.replicators.every((r) => r.consistent)) this.#commits.forgetUpTo(need)
    // Truncating is log maintenance in the write pipeline: done when it is worth it (enough
    // records, or a while since the last time), not after every batch.
    // Closing (or closed, with a replicator settling late): the next open truncates what is due.
    if (need <= this.#truncatedTo || this.#closing) return
    if (need - this.#truncatedTo >= TRUNCATE_SEQS || Date.now() - this.#truncatedAt >= TRUNCATE_MS) {
      this.#truncatedTo = need
      this.#truncatedAt = Date.now()
      this.#host.truncate(need)
    } else if (this.#truncateTimer === null) {
      // Not worth it yet: look again in a while, even if nothing else happens meanwhile.
      this.#truncateTimer = setTimeout(() => {
        this.#truncateTimer = null
        this.#trim()
      }, TRUNCATE_MS)
      this.#truncateTimer.unref()
    }
  }

  /** What the tail of recent writes holds for replicas that keep up. */
  get tail (): { seqs: number, bytes: number } {
    return this.#tail.size
  }

  status (): ReplicaStatus[] {
    const head = this.#host.head()
    const now = Date.now()
    return this.replicators.map((r) => {
      const w = r.consistent ? r.watermark : -1
      const { ms, bytes } = w < head ? this.#commits.lag(w, now, this.#bytes) : { ms: 0, bytes: 0 }
      return {
        name: r.name,
        state: r.state,
        consistent: r.consistent,
        watermark: r.watermark,
        head,
        lag: { seqs: Math.max(0, head - Math.max(w, 0)), bytes, ms },
        error: r.lastError === null ? null : describeError(r.lastError),
        errorCode: telling(r.lastError),
        reason: r.reason,
        batch: inFlight(r, now)
      }
    })
  }

  /**
   * Ships what is pending to replicas that can be reached, stops, and releases waiting writes.
   * Gives up after `timeout` ms (0: no limit): what was not applied stays in the log and ships
   * after the next open.
   */
  async close (timeout: number): Promise<void> {
    // Replicators finishing their close still report progress; a look-again timer armed then
    // would fire after the database closed.
    this.#closing = true
    for (const timer of this.#verifyTimers) clearInterval(timer)
    if (this.#truncateTimer !== null) clearTimeout(this.#truncateTimer)
    const closing = Promise.all(this.replicators.map((r) => r.close()))
    if (!(await settlesWithin(closing, timeout))) {
      for (const r of this.replicators) r.abort()
      // Closing the transport under what is in flight makes it give up; an adapter that does not
      // is left behind after a grace period rather than holding close() up.
      await settlesWithin(Promise.all(this.replicators.map((r) => r.adapter.close().catch(() => {}))), ABORT_GRACE)
      await settlesWithin(closing, ABORT_GRACE)
    }
    for (const w of this.#waiters) {
      if (w.timer !== null) clearTimeout(w.timer)
      if (this.#done(w)) w.resolve()
      else w.reject(new MirrorError('The database closed before replicas acknowledged the write; it is committed locally', codes.CLOSED))
    }
    this.#waiters = []
    await settlesWithin(Promise.all(this.replicators.map((r) => r.adapter.close().catch(() => {}))), timeout === 0 ? 0 : ABORT_GRACE)
  }
}

const ABORT_GRACE = 1000

// Whether `promise` settles within `ms` (0: waits as long as it takes).
async function settlesWithin (promise: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = promise.then(() => true, () => true)
  if (ms === 0) return await settled
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms) })
  try {
    return await Promise.race([settled, late])
  } finally {
    clearTimeout(timer)
  }
}

function inFlight (r: Replicator, now: number): ReplicaStatus['batch'] {
  const b = r.inFlight
  return b === null ? null : { from: b.from, to: b.to, full: b.full, staged: b.staged, parts: b.parts, ops: b.ops, bytes: b.bytes, ms: now - b.started }
}

// A verify rejects with a MirrorError whatever failed under it: a replica db's own error (no code
// of ours) becomes MIRROR_REPLICA_FAILED with it as the cause; our errors (a dropped link's
// MIRROR_UNREACHABLE) keep their code.
function verifyFailed (name: string, err: unknown): MirrorError {
  if (err instanceof MirrorError) return err
  const code = telling(err) === 'LEVEL_CORRUPTION' ? codes.CORRUPT : codes.REPLICA_FAILED
  return new MirrorError(`verify('${name}'): the replica failed: ${describeError(err)}`, code, { cause: err })
}
