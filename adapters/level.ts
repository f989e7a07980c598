import type { AbstractDatabaseOptions, AbstractLevel } from 'abstract-level'
import type { BatchPart, CommonReplicaOptions, PartAck, ReplicaAdapter, ReplicaHello } from '../lib/adapter'
import { MirrorError, codes } from '../lib/errors'
import { describe } from '../lib/options'
import type { Fingerprint, KeyRangeBounds } from '../lib/fingerprint'
import { ReplicaEngine } from '../lib/replica/engine'
import { ReplicaReader } from '../lib/replica/reader'
import { checkReplicaOptions } from '../lib/replication/replica-options'

/** Options of {@link LevelReplica}: the common replica options, and how much of a batch it holds in memory. */
export interface LevelReplicaOptions extends CommonReplicaOptions {
  /**
   * A batch of up to this many bytes is applied as one atomic batch of the replica db; a larger
   * one goes through the replica's journal (see the README, "Reading a replica"). Default 32 MiB.
   */
  maxApplyBytes?: number
}

let count = 0

/**
 * A replica in this process: any abstract-level database, normally a classic-level directory on
 * another disk. The adapter owns the replica db: it opens it when the primary first connects and
 * closes it when the primary closes. Do not write to the replica db yourself; read it, or open
 * the directory with plain `level` once the primary is closed.
 */
export class LevelReplica implements ReplicaAdapter {
  readonly name: string
  readonly options: LevelReplicaOptions
  #engine: ReplicaEngine

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  constructor (db: AbstractLevel<any, any, any>, options: LevelReplicaOptions = {}) {
    if (typeof db !== 'object' || db === null || typeof db.batch !== 'function' || typeof db.iterator !== 'function') {
      throw new MirrorError(`LevelReplica: the first argument must be an abstract-level database, got ${describe(db)}`, codes.INVALID_OPTION)
    }
    if (typeof options !== 'object' || options === null) {
      throw new MirrorError(`LevelReplica: options must be an object, got ${describe(options)}`, codes.INVALID_OPTION)
    }
    checkReplicaOptions('LevelReplica', options, ['maxApplyBytes'])
    this.#engine = new ReplicaEngine(db, { maxApplyBytes: options.maxApplyBytes })
    this.name = options.name ?? `level-${++count}`
    this.options = { ...options }
  }

  /** The replica db (do not write to it: read it through `reader()`). */
  get db (): unknown {
    return this.#engine.db
  }

  /**
   * A read-only view of the replica that only ever shows real states of the primary, also while
   * a large batch is applied through the journal (reading the replica db directly may then show
   * a mix). It reads while the replica is open: from the primary's open to its close.
   */
  reader<K = string, V = string> (options?: AbstractDatabaseOptions<K, V>): ReplicaReader<K, V> {
    return new ReplicaReader<K, V>(this.#engine, options)
  }

  async hello (): Promise<ReplicaHello> {
    await this.#engine.open()
    return this.#engine.hello()
  }

  async apply (part: BatchPart, received?: () => void): Promise<PartAck> {
    received?.()
    return await this.#engine.apply(part)
  }

  async close (): Promise<void> {
    await this.#engine.close()
  }

  async fingerprint (ranges: KeyRangeBounds[]): Promise<Fingerprint[]> {
    await this.#engine.open()
    return await this.#engine.fingerprint(ranges)
  }

  async salvage (): Promise<void> {
    await this.#engine.salvage()
  }

  async digests (range: KeyRangeBounds, from: Buffer | null, limit: number): Promise<{ entries: Array<[Buffer, Buffer]>, more: boolean }> {
    await this.#engine.open()
    return await this.#engine.digests(range, from, limit)
  }
}
