import { AbstractLevel, type AbstractDatabaseOptions, type AbstractSnapshot } from 'abstract-level'
import { MirrorError, codes } from '../errors'
import { BUFFERS } from '../inner'
import { isReserved } from '../keyspace'
import { UserIterator, type InnerIterator } from '../user-iterator'
import type { ReplicaEngine } from './engine'

/**
 * A read-only abstract-level view of a live replica in this process that only ever shows real
 * states of the primary: every read (a get, a getMany, an iterator from start to close) sees one
 * state, and while the engine applies a journaled batch it sees the state before that batch.
 * While a first copy is written in place into a replica that held nothing, it shows nothing.
 * The reserved range is hidden; writes are refused with `MIRROR_READ_ONLY`. It reads while the
 * replica is open (from the primary's open to its close) and never closes the replica db.
 */
export class ReplicaReader<KDefault = string, VDefault = string> extends AbstractLevel<Buffer, KDefault, VDefault> {
  #engine: ReplicaEngine

  constructor (engine: ReplicaEngine, options: AbstractDatabaseOptions<KDefault, VDefault> = {}) {
    if (engine.db.supports.explicitSnapshots !== true) {
      throw new MirrorError('A replica reader needs a replica db with explicit snapshots (classic-level, memory-level and level have them)', codes.INVALID_OPTION)
    }
    super({
      encodings: { buffer: true },
      seek: true,
      implicitSnapshots: true,
      explicitSnapshots: false,
      has: true,
      permanence: engine.db.supports.permanence,
      createIfMissing: false,
      errorIfExists: false
    } as Record<string, unknown>, options)
    this.#engine = engine
  }

  async _open (): Promise<void> {
    await this.#engine.open()
  }

  async _close (): Promise<void> {}

  // `empty`: what `fn` gives for a replica that holds no state of a primary yet.
  async #read<T> (fn: (snapshot: AbstractSnapshot) => Promise<T>, empty: T): Promise<T> {
    const view = this.#engine.readView()
    try {
      return view.empty ? empty : await fn(view.snapshot)
    } finally {
      view.release()
    }
  }

  async _get (key: Buffer): Promise<Buffer | undefined> {
    if (isReserved(key)) return undefined
    return await this.#read((snapshot) => this.#engine.db.get(key, { ...BUFFERS, snapshot }), undefined)
  }

  async _getMany (keys: Buffer[]): Promise<Array<Buffer | undefined>> {
    const values: Array<Buffer | undefined> = await this.#read((snapshot) => this.#engine.db.getMany(keys, { ...BUFFERS, snapshot }), keys.map(() => undefined))
    for (let i = 0; i < keys.length; i++) if (isReserved(keys[i])) values[i] = undefined
    return values
  }

  async _has (key: Buffer): Promise<boolean> {
    return (await this._get(key)) !== undefined
  }

  async _hasMany (keys: Buffer[]): Promise<boolean[]> {
    return (await this._getMany(keys)).map((v) => v !== undefined)
  }

  _iterator (options: Record<string, unknown>): UserIterator<KDefault, VDefault> {
    const view = this.#engine.readView()
    const { limit, keys, keyEncoding, valueEncoding, snapshot, ...rest } = options
    const inner = this.#engine.db.iterator({ ...rest, ...BUFFERS, keys: true, values: options.values !== false, snapshot: view.snapshot, ...(view.empty ? { limit: 0 } : {}) }) as unknown as InnerIterator
    const close = inner.close.bind(inner)
    inner.close = async () => {
      try {
        await close()
      } finally {
        view.release()
      }
    }
    return new UserIterator(this, options, inner)
  }

  async _put (): Promise<void> { throw readOnly() }
  async _del (): Promise<void> { throw readOnly() }
  async _batch (): Promise<void> { throw readOnly() }
  async _clear (): Promise<void> { throw readOnly() }
}

function readOnly (): MirrorError {
  return new MirrorError('A replica reader is read-only: write through the primary', codes.READ_ONLY)
}
