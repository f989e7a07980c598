import type { AbstractLevel } from 'abstract-level'

/** Any abstract-level 3 database, used with Buffer keys and values. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type InnerDb = AbstractLevel<any, any, any>

export type InnerOp =
  | { type: 'put', key: Buffer, value: Buffer }
  | { type: 'del', key: Buffer }

export const BUFFERS = Object.freeze({ keyEncoding: 'buffer', valueEncoding: 'buffer' } as const)
