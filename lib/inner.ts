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
