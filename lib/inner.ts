import { existsSync } from 'node:fs'
import type { AbstractLevel } from 'abstract-level'
import { MirrorError, codes } from './errors'
import { describe } from './options'

/** Any abstract-level 3 database, used with Buffer keys and values. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type InnerDb = AbstractLevel<any, any, any>

export type InnerOp =
  | { type: 'put', key: Buffer, value: Buffer }
  | { type: 'del', key: Buffer }

export const BUFFERS = Object.freeze({ keyEncoding: 'buffer', valueEncoding: 'buffer' } as const)

/** Refuses what is not an abstract-level database (a path, an object), naming the function. */
export function checkDb (where: string, db: unknown): asserts db is InnerDb {
  const d = db as InnerDb
  if (typeof d !== 'object' || d === null || typeof d.open !== 'function' || typeof d.batch !== 'function' || typeof d.iterator !== 'function') {
    throw new MirrorError(`${where}: expected an abstract-level database (e.g. new ClassicLevel(dir)), got ${describe(db)}`, codes.INVALID_OPTION)
  }
}

/**
 * Refuses a db whose directory does not exist (classic-level's `location`) before it opens: it
 * would create an empty store there, and a misspelt path would be left behind as one. Call it
 * before anything is awaited: abstract-level opens a new db on the next tick, and a db closed
 * before then never opens. (A db whose `open()` the caller already started is opened by the
 * caller: what that open creates is its own.)
 */
export async function refuseMissingStore (where: string, db: InnerDb): Promise<void> {
  const location = (db as { location?: unknown }).location
  if (db.status === 'open' || typeof location !== 'string' || existsSync(location)) return
  await db.close().catch(() => {})
  throw new MirrorError(`${where}: ${location} does not exist (a misspelt path?)`, codes.INVALID_OPTION)
}

type BatchOptions = typeof BUFFERS | (typeof BUFFERS & { sync: boolean })
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Private = InnerDb & { _batch: (ops: InnerOp[], options: BatchOptions) => Promise<void>, db?: unknown, hooks: any }
const storesBuffers = new WeakMap<InnerDb, boolean>()

/**
 * `db.batch(ops)`, going straight to the implementation's `_batch` where abstract-level's public
 * layer would change nothing: an open root db that takes Buffers as they are, with no prewrite
 * hook and no 'write' listener. That layer clones, validates and re-encodes every op of every
 * commit, which the pipeline's own ops never need. Anything else takes the public path, so hooks,
 * events, sublevels and deferred opening behave as ever.
 */
export function writeBatch (db: InnerDb, ops: InnerOp[], options: BatchOptions = BUFFERS): Promise<void> {
  const d = db as Private
  if (d.status === 'open' && d.hooks?.prewrite?.noop === true && typeof d.listenerCount === 'function' && d.listenerCount('write') === 0 && storesAsIs(d)) {
    return d._batch(ops, options)
  }
  return db.batch(ops, options)
}

function storesAsIs (db: Private): boolean {
  let known = storesBuffers.get(db)
  if (known === undefined) {
    // A sublevel's `db` is its root: its keys need its prefix, which only the public layer adds.
    known = (db.db === undefined || db.db === db) && typeof db._batch === 'function' &&
      db.keyEncoding('buffer').format === 'buffer' && db.valueEncoding('buffer').format === 'buffer'
    storesBuffers.set(db, known)
  }
  return known
}
