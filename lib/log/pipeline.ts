import { MirrorError, codes } from '../errors'
import { HEAD_KEY, encodeHead, type Head } from './head'
import { HEAD_EVERY, storedHead } from './records'
import { BUFFERS, writeBatch, type InnerDb, type InnerOp } from '../inner'
import { logKey } from '../keyspace'
import { encodeRecord } from './record-codec'
import { Queue } from '../queue'

interface PendingWrite {
  ops: InnerOp[]
  bytes: number
  sync: boolean
  resolve: (seq: number) => void
  reject: (err: Error) => void
  job?: undefined
}

interface PendingJob {
  job: () => Promise<void>
  resolve: () => void
  reject: (err: Error) => void
}

/**
 * One atomic step of log maintenance: ops on the log and its new size, or null when done.
 * `committed` runs once the step's batch has landed (not if it failed).
 */
export type MaintenanceStep = (head: Head) => Promise<{ ops: InnerOp[], logBytes: number, committed?: () => void } | null>

export interface PipelineOptions {
  /** A group commit takes queued writes until it holds this many ops (a larger write goes alone). */
  maxGroupOps: number
  /** ... or this many bytes of keys and values. */
  maxGroupBytes: number
  /**
   * Called after every commit, in seq order, with the user ops it wrote, their bytes of keys and
   * values, and the bytes of the log record it wrote (key and value).
   */
  onCommit: (seq: number, head: Head, bytes: number, ops: InnerOp[], recordBytes: number) => void
}

/**
 * The one queue every write passes through (invariant 2). Writes that queue up while the inner db
 * commits the previous group are committed together as one inner batch with one seq (group commit);
 * each inner batch also holds the log record of that seq and the new head (invariant 1). Jobs (log
 * compaction, truncation) run between groups, so nothing else ever writes the log or the head.
 */
export class Pipeline {
  #inner: InnerDb
  #options: PipelineOptions
  #queue = new Queue<PendingWrite | PendingJob>()
  #running = false
  #idleWaiters: Array<() => void> = []
  // After a failed commit we do not know for sure that nothing landed; re-read the head first.
  #uncertain = false
  #maintaining = new Set<string>()
  // Ops that go into the next commit with a new seq, atomically with it (a new history entry).
  #prelude: { ops: InnerOp[], committed: () => void } | null = null
  head: Head

  constructor (inner: InnerDb, head: Head, options: PipelineOptions) {
    this.#inner = inner
    this.head = head
    this.#options = options
  }

  /** Commits `ops` atomically with their log record; resolves with the seq that holds them. */
  write (ops: InnerOp[], sync = false): Promise<number> {
    let bytes = 0
    for (const op of ops) bytes += op.key.length + (op.type === 'put' ? op.value.length : 0)
    return new Promise((resolve, reject) => {
      this.#queue.push({ ops, bytes, sync, resolve, reject })
      this.#kick()
    })
  }

  /**
   * Adds `ops` to the next commit of user writes, atomically with it; `committed` runs once that
   * commit has landed. (A failed commit keeps them for the next.)
   */
  withNextCommit (ops: InnerOp[], committed: () => void): void {
    this.#prelude = { ops, committed }
  }

  /** Runs `job` alone, after every write queued before it. */
  run (job: () => Promise<void>): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ job, resolve, reject })
      this.#kick()
    })
  }

  /**
   * Runs log maintenance (compaction, truncation) as a job: `step` until it returns null, each
   * step committed atomically with the new log size. One job per `name` queued at a time.
   */
  maintain (name: string, step: MaintenanceStep): Promise<void> {
    if (this.#maintaining.has(name)) return Promise.resolve()
    this.#maintaining.add(name)
    return this.run(async () => {
      while (true) {
        const next = await step(this.head)
        if (next === null) break
        await this.#commitMaintenance(next.ops, next.logBytes)
        next.committed?.()
      }
    }).finally(() => this.#maintaining.delete(name))
  }

  // Ops on the log only (no user data, no new seq), with the head's new log size.
  async #commitMaintenance (ops: InnerOp[], logBytes: number): Promise<void> {
    const head = { seq: this.head.seq, logBytes }
    await this.#inner.batch([...ops, { type: 'put', key: HEAD_KEY, value: encodeHead(head) }], BUFFERS)
    this.head = head
  }

  /** Resolves when the queue is empty and nothing is being committed. */
  idle (): Promise<void> {
    if (!this.#running && this.#queue.length === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  #kick (): void {
    if (this.#running) return
    this.#running = true
    this.#drain().finally(() => {
      this.#running = false
      if (this.#queue.length > 0) return this.#kick()
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const resolve of waiters) resolve()
    })
  }

  async #drain (): Promise<void> {
    while (this.#queue.length > 0) {
      const first = this.#queue.peek() as PendingWrite | PendingJob
      if (first.job !== undefined) {
        this.#queue.shift()
        try {
          await first.job()
          first.resolve()
        } catch (err) {
          first.reject(err as Error)
        }
        continue
      }
      const group = this.#takeGroup()
      await this.#commitGroup(group)
      // Under concurrency, let the writers just resolved queue their next writes (they run in
      // microtasks) before the next group is taken: groups twice as large, for one event-loop
      // turn. A lone writer, awaiting each write, would only wait that turn for nothing: its next
      // write starts the pipeline again itself.
      if (group.length > 1 || this.#queue.length > 0) await new Promise(setImmediate)
    }
  }

  #takeGroup (): PendingWrite[] {
    const { maxGroupOps, maxGroupBytes } = this.#options
    const group: PendingWrite[] = []
    let ops = 0
    let bytes = 0
    while (this.#queue.length > 0) {
      const next = this.#queue.peek() as PendingWrite | PendingJob
      if (next.job !== undefined) break
      if (group.length > 0 && (ops + next.ops.length > maxGroupOps || bytes + next.bytes > maxGroupBytes)) break
      this.#queue.shift()
      group.push(next)
      ops += next.ops.length
      bytes += next.bytes
    }
    return group
  }

  async #commitGroup (group: PendingWrite[]): Promise<void> {
    try {
      const seq = await this.#commit(group)
      for (const w of group) w.resolve(seq)
      return
    } catch (err) {
      if (group.length === 1) {
        group[0].reject(failed(err))
        return
      }
    }
    // One bad write must not fail the writes it happened to share a group with: retry them alone,
    // in their order, so each gets its own outcome.
    for (const w of group) {
      try {
        w.resolve(await this.#commit([w]))
      } catch (err) {
        w.reject(failed(err))
      }
    }
  }

  async #commit (group: PendingWrite[]): Promise<number> {
    if (this.#uncertain) {
      const stored = await storedHead({ db: this.#inner })
      if (stored !== null) this.head = stored
      this.#uncertain = false
    }
    const from = this.head.seq
    const seq = from + 1
    const user: InnerOp[] = []
    const keys: Buffer[] = []
    let sync = false
    let bytes = 0
    for (const w of group) {
      bytes += w.bytes
      for (const op of w.ops) {
        user.push(op)
        keys.push(op.key)
      }
      sync ||= w.sync
    }
    const recordKey = logKey(seq)
    const record = encodeRecord(from, keys)
    const recordBytes = recordKey.length + record.length
    const head = { seq, logBytes: this.head.logBytes + recordBytes }
    const prelude = this.#prelude
    const ops = user.slice()
    if (prelude !== null) ops.push(...prelude.ops)
    ops.push({ type: 'put', key: recordKey, value: record })
    // The head is in the log (its newest record); the head key is refreshed now and then so that
    // opening reads only a few records past it.
    if (seq % HEAD_EVERY === 0) ops.push({ type: 'put', key: HEAD_KEY, value: encodeHead(head) })
    try {
      // `sync` is classic-level's: fsync this batch (and so everything before it) to disk
      await writeBatch(this.#inner, ops, sync ? { ...BUFFERS, sync } : BUFFERS)
    } catch (err) {
      this.#uncertain = true
      throw err
    }
    this.head = head
    if (prelude !== null && this.#prelude === prelude) {
      this.#prelude = null
      prelude.committed()
    }
    this.#options.onCommit(seq, head, bytes, user, recordBytes)
    return seq
  }
}

function failed (err: unknown): Error {
  if (err instanceof MirrorError) return err
  return new MirrorError('The inner database failed to commit the write', codes.WRITE_FAILED, { cause: err })
}
