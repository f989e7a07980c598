import { AbstractChainedBatch } from 'abstract-level'
import type { InnerOp } from '../inner'

type Op = { type: 'put', key: Buffer, value: Buffer } | { type: 'del', key: Buffer }

// abstract-level's types leave out the constructor options and the _add/_clear/_write contract
const ChainedBatch = AbstractChainedBatch as unknown as new (db: unknown, options: { add: boolean }) => object

/**
 * A chained batch of a MirrorLevel. Unlike abstract-level's default one it copies each key and
 * value as it is added, so a caller may reuse its Buffer between `put()` calls, as it may with
 * classic-level's own chained batch.
 */
export class MirrorChainedBatch extends ChainedBatch {
  #ops: InnerOp[] = []
  #commit: (ops: InnerOp[], options: { sync?: unknown }) => Promise<unknown>

  constructor (db: unknown, commit: (ops: InnerOp[], options: { sync?: unknown }) => Promise<unknown>) {
    super(db, { add: true })
    this.#commit = commit
  }

  _add (op: Op): void {
    this.#ops.push(op.type === 'put'
      ? { type: 'put', key: Buffer.from(op.key), value: Buffer.from(op.value) }
      : { type: 'del', key: Buffer.from(op.key) })
  }

  _clear (): void {
    this.#ops = []
  }

  async _write (options: { sync?: unknown }): Promise<void> {
    await this.#commit(this.#ops, options)
  }
}
