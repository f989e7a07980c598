import type { BatchPart, ReplicaAdapter, ReplicaHello } from '../adapter'
import { buildParts, logCovers, planCatchUp, planSteps, tailParts, type Plan, type SnapshotSource } from './batch-builder'
import type { ValueTail } from './tail'
import { MirrorError, codes } from '../errors'
import { headSeq } from '../log/records'
import type { InnerDb } from '../inner'
import { Signal, backoff } from './signal'
import { readAhead } from './read-ahead'
import { generationAt, historyAt, type HistoryEntry } from '../history'
import { standing } from './standing'
import { CANNOT_CURE, REFUSALS, deciding, type ReplicaState, type ResolvedReplicaOptions } from './replica-options'

export { resolveReplicaOptions, type ReplicaState, type ResolvedReplicaOptions } from './replica-options'

interface InFlight { from: number, to: number, full: boolean, staged: number, parts: number, ops: number, bytes: number, started: number }

/** What a replicator needs from the primary; policy that spans replicas stays with the caller. */
export interface ReplicatorHost {
  readonly inner: InnerDb
  /** The ops of the most recent seqs, for a replica that keeps up. */
  readonly tail: ValueTail
  /** The primary's generation history, oldest first. */
  history (): HistoryEntry[]
  /** The last committed seq. */
  head (): number
  /** Whether a write waits on this replica in a sync mode (ship without the coalescing delay). */
  urgent (): boolean
  /** Progress or a change of state: re-check waiters, truncation, events. */
  changed (r: Replicator): void
  batchShipped (r: Replicator, info: { from: number, to: number, full: boolean, parts: number, ops: number, bytes: number }): void
  stateChanged (r: Replicator, previous: ReplicaState): void
  /** An attempt failed (it is retried after a backoff). */
  failed (r: Replicator, error: Error, attempt: number): void
}

/**
 * Keeps one replica up to date (one per adapter). Each batch takes the replica from its watermark
 * `w` to the head `h` of a snapshot of the inner db: the net effect of the consecutive seqs
 * `(w, h]`, with values read from that snapshot, so the replica jumps between real states of the
 * primary and never sees half of a write or a later write without an earlier one.
 */
export class Replicator {
  readonly adapter: ReplicaAdapter
  readonly options: ResolvedReplicaOptions
  #host: ReplicatorHost
  #state: ReplicaState = 'connecting'
  #wake = new Signal()
  #closing = false
  #aborted = false
  #closed: Promise<void> | null = null
  // Failed attempts since the last batch that landed: a replica that answers hello but fails
  // every batch still gets backed off.
  #attempt = 0
  // What the replica's last hello said it had staged.
  #staged: { to: number, parts: number } | null = null
  /** The batch being shipped, while one is (see `ReplicaStatus.batch`). */
  inFlight: InFlight | null = null
  // The largest part the transport carries, from the replica's hello.
  #maxPartBytes = Infinity
  // Idle until a commit wakes it (see committed()).
  #waitingForWork = false
  // Verifications waiting for the replica to be held at one seq.
  #holds: Hold[] = []
  // A demoted primary's fork and log, while it waits to rejoin.
  #rejoin: { fork: number, head: number, records: Array<[number, number, Buffer[]]> | null } | null = null
  // The replica keeps our history with its watermark (false: an older replica that did not).
  #knownHistory = false
  /** The replica's watermark as last reported or acknowledged (-1: not yet known). */
  watermark = -1
  /** The highest seq the replica has received (memsync); at least the watermark. */
  received = -1
  /** The replica holds some real state of the primary (it was synced at least once). */
  consistent = false
  /** The seq of a full copy on its way to the replica (or staged there), which the log must keep covering. */
  pendingCopy: number | null = null
  lastError: Error | null = null
  reason: string | null = null

  constructor (adapter: ReplicaAdapter, options: ResolvedReplicaOptions, host: ReplicatorHost) {
    this.adapter = adapter
    this.options = options
    this.#host = host
  }

  get name (): string { return this.options.name }
  /** How large a part may be for this replica: its options, and what its transport carries. */
  get partLimits (): { maxOps: number, maxBytes: number } {
    return { maxOps: this.options.maxBatchOps, maxBytes: Math.min(this.options.maxBatchBytes, this.#maxPartBytes) }
  }
  get state (): ReplicaState { return this.#state }

  /**
   * Whether sync-mode writes wait on this replica under 'degrade': yes unless it is known to be
   * down, refused or failed. A replica still connecting after start, or on its first full copy, counts.
   */
  get up (): boolean {
    return this.#state !== 'down' && this.#state !== 'refused' && this.#state !== 'failed' && this.#state !== 'closed'
  }

  start (): void {
    this.#closed = this.#run()
  }

  /** New commits or new waiters: look again. */
  notify (): void {
    this.#wake.notify()
  }

  /**
   * A new commit: wakes the replicator only if it waits for work. While it waits out its
   * coalescing window, or ships, a commit changes nothing it would do (and waking it on every one
   * cost more than the shipping itself for writers that await each write).
   */
  committed (): void {
    if (this.#waitingForWork) this.#wake.notify()
  }

  /**
   * Ships what is pending (a first full copy included) if the replica can be reached, then stops.
   * Resolves when done; `abort()` makes it stop early.
   */
  async close (): Promise<void> {
    this.#closing = true
    this.#wake.notify()
    await this.#closed
    this.#failHolds(new MirrorError('the database closed before the replica was verified', codes.CLOSED))
    this.#setState('closed')
  }

  /**
   * Stops shipping at once (close took too long): the batch in hand is abandoned between parts
   * and the transport closed under it. What was not applied stays in the log for the next open.
   */
  abort (): void {
    this.#closing = true
    this.#aborted = true
    this.#wake.notify()
  }

  #setState (state: ReplicaState): void {
    if (state === this.#state) return
    const previous = this.#state
    this.#state = state
    this.#host.stateChanged(this, previous)
  }

  async #run (): Promise<void> {
    while (!this.#closing) {
      try {
        const hello = await this.adapter.hello()
        if (this.#aborted || (this.#closing && hello.watermark >= this.#host.head())) break
        this.#accept(hello)
        // Reached and accepted: why it was down no longer holds.
        this.lastError = null
        this.#setState(this.watermark < this.#host.head() || !this.consistent ? 'streaming' : 'idle')
        let resume = hello.pending
        while (true) {
          const shipped = await this.#shipWhenDue(resume)
          resume = null
          if (!shipped) break
        }
        break
      } catch (err) {
        if (this.#aborted) break
        const code = deciding(err)
        this.lastError = err as Error
        const stuck = REFUSALS.has(code) || CANNOT_CURE.has(code)
        if (REFUSALS.has(code)) this.reason = (err as Error).message
        this.#setState(REFUSALS.has(code) ? 'refused' : CANNOT_CURE.has(code) ? 'failed' : 'down')
        this.#failHolds(this.lastError)
        this.#host.failed(this, this.lastError, this.#attempt)
        this.#host.changed(this)
        if (this.#closing) break
        // A replica we will not write to is let go (its connection, its lock) until we look again.
        if (stuck) await this.adapter.close().catch(() => {})
        const delay = stuck ? this.options.retryMaxDelay : backoff(this.#attempt, this.options.retryMinDelay, this.options.retryMaxDelay)
        this.#attempt++
        await this.#wake.wait(delay)
      }
    }
  }

  // Where the replica stands against this primary (see standing()); refused ones throw.
  #accept (hello: ReplicaHello): void {
    const history = this.#host.history()
    const head = this.#host.head()
    const pending = hello.pending
    // More of the same batch staged since the last hello: the link failed, but the batch moved on,
    // so the next failure is retried soon again (under frequent cuts a first copy otherwise spent
    // most of its time waiting out a backoff grown to retryMaxDelay).
    if (pending !== null && this.#staged?.to === pending.to && pending.parts > this.#staged.parts) this.#attempt = 0
    this.#staged = pending === null ? null : { to: pending.to, parts: pending.parts }
    // (A staged incremental batch needs nothing kept: the replica's own watermark holds the log.)
    this.pendingCopy = pending !== null && pending.from === undefined && pending.to <= head && generationAt(history, pending.to) === pending.generation ? pending.to : null
    this.#maxPartBytes = typeof hello.maxPartBytes === 'number' && hello.maxPartBytes > 0 ? hello.maxPartBytes : Infinity
    this.#knownHistory = typeof hello.checksum === 'string'
    const s = standing(hello, history, head, this.name, this.options.overwrite)
    this.#rejoin = s.kind === 'rejoin' ? { fork: s.fork, head: s.head, records: s.records } : null
    // Keep the log from the fork on: the rejoin needs what we changed since.
    if (s.kind === 'rejoin') this.pendingCopy = s.fork
    this.reason = s.kind === 'copy' ? s.reason : null
    this.consistent = s.kind === 'synced'
    this.watermark = s.kind === 'rejoin' ? s.fork : s.watermark
    this.received = this.watermark
    this.#host.changed(this)
  }

  // Waits for work (and the coalescing window), then ships one batch. False once closing.
  async #shipWhenDue (resume: ReplicaHello['pending']): Promise<boolean> {
    let dueAt: number | null = null
    while (true) {
      if (this.#holds.length > 0 && !this.#closing) {
        await this.#serveHolds()
        // It shipped from the replica's watermark: what the hello said was staged is gone or stale.
        resume = null
        continue
      }
      const behind = this.#host.head() > this.watermark || !this.consistent
      if (this.#closing) {
        // Closing ships what is due, a first copy included, unless close ran out of time.
        if (behind && !this.#aborted) await this.#ship(resume)
        return false
      }
      if (!behind) {
        dueAt = null
        // Up and holding everything: whatever went wrong before is over.
        this.lastError = null
        this.#setState('idle')
        this.#waitingForWork = true
        await this.#wake.wait()
        this.#waitingForWork = false
        continue
      }
      this.#setState(this.consistent ? 'streaming' : 'syncing')
      if (!this.consistent || this.#host.urgent() || this.options.maxDelay === 0) break
      dueAt ??= Date.now() + this.options.maxDelay
      const left = dueAt - Date.now()
      if (left <= 0) break
      await this.#wake.wait(left)
    }
    await this.#ship(resume)
    return true
  }

  async #ship (resume: ReplicaHello['pending']): Promise<void> {
    // A replica that keeps up gets the ops the pipeline just committed, without a read of LevelDB.
    const tail = this.#host.tail
    if (this.consistent && resume === null && this.#rejoin === null && tail.covers(this.watermark)) {
      const { to, ops } = tail.since(this.watermark)
      this.#setState('streaming')
      const plan: Plan = { kind: 'incremental', from: this.watermark, to }
      await this.#shipBatches(withPlan(plan, tailParts(ops, plan, generationAt(this.#host.history(), to), this.partLimits)))
      this.lastError = null
      this.#setState(this.watermark >= this.#host.head() ? 'idle' : 'streaming')
      return
    }
    const inner = this.#host.inner
    const source: SnapshotSource = { db: inner, snapshot: inner.snapshot() }
    try {
      await this.#shipFrom(source, resume)
    } finally {
      await source.snapshot.close()
    }
  }

  // Ships what takes the replica to the head of `source`.
  async #shipFrom (source: SnapshotSource, resume: ReplicaHello['pending']): Promise<void> {
    const to = await headOf(source)
    const plan = await this.#plan(source, to, resume)
    let plans: Plan[] = [plan]
    if (plan.kind === 'full' || plan.rejoin !== undefined) {
      this.#setState('syncing')
      // From now on, before anything is read for it, the log must keep what the replica will need
      // once this copy lands; a resumed copy, what changed since its staged parts were read (it
      // ships that last, and cut short again, resumes from there again: holding only from the new
      // head, the log was truncated under it and every later cut started the copy over).
      if (plan.kind === 'full') {
        this.pendingCopy = plan.resume?.seq ?? plan.to
        this.#host.changed(this)
      }
    } else if (plan.resume !== undefined) {
      // A journaled batch the replica holds in part: finished as one batch, to this head.
      this.#setState('streaming')
    } else {
      this.#setState('streaming')
      let from = plan.from
      const steps = plan.steps ?? await planSteps(source, plan.from, plan.to, this.options.maxBatchOps)
      plans = steps.map((step) => {
        const stepPlan: Plan = { kind: 'incremental', from, to: step, keys: steps.length === 1 ? plan.keys : undefined }
        from = step
        return stepPlan
      })
    }
    // The next part (of this batch or the next step's) is read while the replica applies this one.
    await this.#shipBatches(readAhead(this.#snapshotShipments(source, plans)))
    this.lastError = null
    this.#setState(this.watermark >= this.#host.head() ? 'idle' : 'streaming')
  }

  async * #snapshotShipments (source: SnapshotSource, plans: Plan[]): AsyncGenerator<Shipment> {
    for (const plan of plans) {
      for await (const part of buildParts(source, plan, generationAt(this.#host.history(), plan.to), this.partLimits)) yield { plan, part }
    }
  }

  /**
   * Runs `fn` with the replica brought to the head of a snapshot of the primary and nothing else
   * shipped to it until `fn` settles (verification: both sides compared at one seq). The app's
   * writes and the other replicas go on. Rejects at once if the replica is down, refused or
   * failed, and after `timeout` ms if it does not come up.
   */
  runHeld<T> (fn: (source: SnapshotSource, seq: number) => Promise<T>, timeout: number): Promise<T> {
    if (!this.up) return Promise.reject(this.lastError ?? new MirrorError(`replica '${this.name}' is ${this.#state}`, codes.CLOSED))
    return new Promise<T>((resolve, reject) => {
      const hold: Hold = {
        fn: fn as Hold['fn'],
        resolve: resolve as Hold['resolve'],
        reject,
        timer: setTimeout(() => {
          this.#holds = this.#holds.filter((h) => h !== hold)
          reject(new MirrorError(`replica '${this.name}' did not come up for verification within ${timeout} ms (${this.#state})`, codes.REPLICA_TIMEOUT))
        }, timeout)
      }
      this.#holds.push(hold)
      this.#wake.notify()
    })
  }

  async #serveHolds (): Promise<void> {
    const inner = this.#host.inner
    const source: SnapshotSource = { db: inner, snapshot: inner.snapshot() }
    try {
      if (this.watermark < await headOf(source) || !this.consistent) await this.#shipFrom(source, null)
      for (const hold of this.#holds.splice(0)) {
        clearTimeout(hold.timer)
        try {
          hold.resolve(await hold.fn(source, this.watermark))
        } catch (err) {
          hold.reject(err as Error)
        }
      }
    } finally {
      await source.snapshot.close()
    }
  }

  #failHolds (err: Error): void {
    for (const hold of this.#holds.splice(0)) {
      clearTimeout(hold.timer)
      hold.reject(err)
    }
  }

  // Ships batches one after the other, each part in order; a batch ends with its final part.
  async #shipBatches (shipments: AsyncIterable<Shipment>): Promise<void> {
    let batch = null as { plan: Plan, from: number, history: HistoryEntry[], progress: InFlight } | null
    try {
      for await (const { plan, part } of shipments) {
        if (this.#aborted) throw new MirrorError('closed before the batch was shipped; it ships after the next open', codes.CLOSED)
        if (batch?.plan !== plan) {
          const progress = { from: this.watermark, to: plan.to, full: plan.kind === 'full', staged: plan.resume?.index ?? 0, parts: 0, ops: 0, bytes: 0, started: Date.now() }
          batch = { plan, from: this.watermark, history: this.#host.history(), progress }
          this.inFlight = progress
        }
        const to = plan.to
        if (part.final) part.history = this.#historyFor(plan, batch.history)
        const onReceived = part.final ? () => this.#received(to) : undefined
        const ack = await this.adapter.apply(part, onReceived)
        const { progress } = batch
        progress.parts++
        progress.ops += part.ops.length
        progress.bytes += partBytes(part)
        if (!part.final) continue
        this.inFlight = null
        if (ack.watermark < to) throw new MirrorError(`replica '${this.name}' acknowledged seq ${ack.watermark} for a batch to ${to}`, codes.BAD_PART)
        this.#received(ack.watermark)
        this.watermark = ack.watermark
        this.consistent = true
        this.pendingCopy = null
        this.#rejoin = null
        this.#knownHistory = true
        this.#attempt = 0
        this.#host.batchShipped(this, { from: batch.from, to, full: plan.kind === 'full', parts: progress.parts, ops: progress.ops, bytes: progress.bytes })
        // Said now, not once the next read ahead is known to be nothing: whoever waited for this
        // batch may look at the state at once.
        this.lastError = null
        this.#setState(this.watermark >= this.#host.head() ? 'idle' : 'streaming')
        this.#host.changed(this)
      }
    } finally {
      // Whether it landed or failed, nothing is in flight any more.
      this.inFlight = null
    }
  }

  #received (seq: number): void {
    if (seq > this.received) {
      this.received = seq
      this.#host.changed(this)
    }
  }

  // The history entries the replica lacks after this batch: all of them for a copy, a rejoin or a
  // replica that kept none; else those that start between its watermark and `to`.
  #historyFor (plan: Plan, history: HistoryEntry[]): BatchPart['history'] {
    const entries = historyAt(history, plan.to)
    const from = plan.kind === 'full' || plan.rejoin !== undefined || !this.#knownHistory ? 0 : historyAt(history, plan.from).length
    return from < entries.length ? { from, entries: entries.slice(from) } : undefined
  }

  async #plan (source: SnapshotSource, to: number, resume: ReplicaHello['pending']): Promise<Plan> {
    const overwrite = this.options.overwrite
    if (this.#rejoin !== null) {
      const { fork, head, records } = this.#rejoin
      const theirs = records === null ? null : namedAfter(records, fork, head)
      if (theirs !== null && await logCovers(source, fork, to)) return { kind: 'incremental', from: fork, to, rejoin: { fork, keys: theirs } }
      this.reason = `replica '${this.name}' is a demoted primary whose changes since the fork (seq ${fork}) ${theirs === null ? 'its log cannot name' : 'this primary\'s log no longer covers'}: it gets a full copy`
      return { kind: 'full', to, resume: null, overwrite: true }
    }
    const mine = resume !== null && resume.to <= to && generationAt(this.#host.history(), resume.to) === resume.generation
    if (mine && resume.from === undefined && await logCovers(source, resume.to, to)) {
      return { kind: 'full', to, resume: { index: resume.parts, after: resume.upto, seq: resume.to }, overwrite }
    }
    // A journaled incremental batch cut short: the rest of its keys, and what changed since.
    if (mine && resume.from !== undefined && this.consistent && resume.from === this.watermark && await logCovers(source, resume.from, to)) {
      return { kind: 'incremental', from: resume.from, to, resume: { index: resume.parts, after: resume.upto, seq: resume.to } }
    }
    if (this.consistent) {
      const planned = await planCatchUp(source, this.watermark, to, this.options.maxBatchOps)
      if (planned !== null) return { kind: 'incremental', from: this.watermark, to, steps: planned.steps, keys: planned.keys }
    }
    return { kind: 'full', to, resume: null, overwrite }
  }
}

// The keys a demoted primary's log names after `fork`, or null unless its records cover every seq
// from the fork to its `head`. A log truncated past the fork (an open whose replicas all had
// those records, e.g. one with only some of them) names none of the writes it dropped: taken as
// the whole story, those writes stayed behind on the rejoined store as keys its primary never had.
function namedAfter (records: Array<[number, number, Buffer[]]>, fork: number, head: number): Buffer[] | null {
  const keys: Buffer[] = []
  let reach = fork
  for (const [from, to, named] of records) {
    if (to <= fork) continue
    if (from > reach) return null
    reach = to
    keys.push(...named)
  }
  return reach >= head ? keys : null
}

interface Hold {
  fn: (source: SnapshotSource, seq: number) => Promise<unknown>
  resolve: (value: unknown) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
}

/** A part and the batch it belongs to. */
interface Shipment {
  plan: Plan
  part: BatchPart
}

async function * withPlan (plan: Plan, parts: Iterable<BatchPart>): AsyncGenerator<Shipment> {
  for (const part of parts) yield { plan, part }
}

function headOf (source: SnapshotSource): Promise<number> {
  return headSeq(source)
}

function partBytes (part: BatchPart): number {
  let n = 0
  for (const op of part.ops) n += op.key.length + (op.type === 'put' ? op.value.length : 0)
  return n
}
