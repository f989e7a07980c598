import type { BatchPart, PartAck, ReplicaAdapter, ReplicaHello } from '../lib/adapter'
import { LevelReplica } from '../adapters/level'
import type { InnerDb } from '../lib/inner'
import { isReserved, logRange, seqOfLogKey } from '../lib/keyspace'

const LOG_PREFIX = logRange.gte
import { userData } from './helpers'

export type Fault = 'ok' | 'failBefore' | 'failAfter' | { delay: number }

/**
 * An adapter around a LevelReplica that can stall, fail before or after applying (the ack lost),
 * delay, and "restart" the replica (close its engine and open a new one on the same db, which
 * runs recovery). It records the replica's user data after every applied final part.
 */
export class TestAdapter implements ReplicaAdapter {
  readonly name: string
  readonly options: ReplicaAdapter['options']
  readonly db: InnerDb
  inner: LevelReplica
  faults: Fault[] = []
  stalled: Promise<void> | null = null
  #release: (() => void) | null = null
  #restarting: Promise<void> = Promise.resolve()
  applies = 0
  receivedCalls = 0
  /** After every final part that was applied: [watermark, serialized user data]. */
  observed: Array<[number, string]> = []
  parts: BatchPart[] = []

  constructor (db: InnerDb, options: ReplicaAdapter['options'] = {}, name = 'test') {
    this.db = db
    this.name = name
    this.options = { retryMinDelay: 5, retryMaxDelay: 20, ...options }
    this.inner = new LevelReplica(db, this.options)
  }

  stall (): void {
    if (this.stalled !== null) return
    this.stalled = new Promise((resolve) => { this.#release = resolve })
  }

  release (): void {
    this.#release?.()
    this.stalled = null
    this.#release = null
  }

  // Like a replica process coming back: it opens its db (running recovery) on its own. An apply
  // in flight may commit while the db closes, so its state is recorded here, once the replica is
  // back, rather than by the apply; the primary sees nothing until the restart is over.
  async restart (): Promise<void> {
    const done = (async () => {
      await this.inner.close()
      this.inner = new LevelReplica(this.db, this.options)
      const hello = await this.inner.hello()
      // Before its first copy completes a replica holds no state of the primary yet.
      if (hello.generation !== null) this.observed.push([hello.watermark, await serialize(this.db)])
    })()
    this.#restarting = done.catch(() => {})
    await done
  }

  async hello (): Promise<ReplicaHello> {
    await this.#restarting
    return await this.inner.hello()
  }

  async apply (part: BatchPart, received?: () => void): Promise<PartAck> {
    await this.#restarting
    this.parts.push(part)
    if (this.stalled !== null) await this.stalled
    const fault = this.faults.shift() ?? 'ok'
    if (fault === 'failBefore') throw new Error('injected: link failed before apply')
    if (typeof fault === 'object') await new Promise((resolve) => setTimeout(resolve, fault.delay))
    const restarting = this.#restarting
    const ack = await this.inner.apply(part, () => { this.receivedCalls++; received?.() })
    this.applies++
    if (part.final) {
      let state: string
      try {
        state = await serialize(this.db)
      } catch (err) {
        // The db closed under this read: a restart records the state this apply committed.
        if (this.#restarting !== restarting) throw new Error('ack lost in a replica restart')
        throw err
      }
      if (this.#restarting !== restarting) throw new Error('ack lost in a replica restart')
      this.observed.push([ack.watermark, state])
    }
    if (fault === 'failAfter') throw new Error('injected: ack lost after apply')
    return ack
  }

  async close (): Promise<void> {
    this.release()
    await this.inner.close()
  }
}

export async function serialize (db: InnerDb): Promise<string> {
  return JSON.stringify([...(await userData(db))].sort())
}

/**
 * Records the primary's user data after every seq, from the inner db's write events (every inner
 * batch carries the head it commits).
 */
export class PrimaryStates {
  states = new Map<number, string>()
  #model = new Map<string, string>()
  #last = 0

  /** `initial`: the user data the inner db holds now, the primary's state at seq `at`. */
  constructor (inner: InnerDb, initial: Map<string, string> = new Map(), at = 0) {
    this.#model = new Map(initial)
    this.#last = at
    this.states.set(at, this.#serialize())
    inner.on('write', (ops: Array<{ type: string, key: Uint8Array, value?: Uint8Array }>) => {
      let seq: number | null = null
      for (const op of ops) {
        const key = Buffer.from(op.key)
        if (key.subarray(0, LOG_PREFIX.length).equals(LOG_PREFIX)) {
          // Every commit writes the record of its new seq; log maintenance rewrites older ones.
          if (op.type === 'put' && seqOfLogKey(key) > this.#last) seq = seqOfLogKey(key)
        } else if (!isReserved(key)) {
          if (op.type === 'put') this.#model.set(key.toString('hex'), Buffer.from(op.value!).toString('hex'))
          else this.#model.delete(key.toString('hex'))
        }
      }
      if (seq !== null) {
        this.#last = seq
        this.states.set(seq, this.#serialize())
      }
    })
  }

  #serialize (): string {
    return JSON.stringify([...this.#model].sort())
  }
}

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `check` until it holds or `ms` pass. */
export async function until (check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not reached in time')
    await sleep(5)
  }
}
