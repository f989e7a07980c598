import type { AbstractSnapshot } from 'abstract-level'
import { BUFFERS, type InnerDb } from './inner'

const MAX_PAGE = 256
const FIRST_PAGE = 8

/**
 * The values of `keys`, in their order, read with `getMany` a page at a time, the page sized so
 * that it holds about `pageBytes` of values: as many of the largest value of the last page as fit,
 * from 1 to 256 keys, growing at most twofold from one page to the next. A fixed 256 keys a page
 * held 1.28 GB at once with 5 MiB values (a hostile trial saw 380-430 MiB of buffers).
 */
export async function * valuePages (db: InnerDb, keys: readonly Buffer[], snapshot?: AbstractSnapshot, pageBytes = 4 * 1024 * 1024): AsyncGenerator<Array<Buffer | undefined>> {
  let size = FIRST_PAGE
  for (let at = 0; at < keys.length;) {
    const page = keys.slice(at, at + size)
    at += page.length
    const values: Array<Buffer | undefined> = await db.getMany(page, snapshot === undefined ? BUFFERS : { ...BUFFERS, snapshot })
    let largest = 1
    for (const value of values) if (value !== undefined && value.length > largest) largest = value.length
    size = Math.max(1, Math.min(MAX_PAGE, size * 2, Math.floor(pageBytes / largest)))
    yield values
  }
}
