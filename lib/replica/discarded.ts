import { closeSync, fsyncSync, openSync, readFileSync, readSync, renameSync, writeSync } from 'node:fs'
import { BUFFERS, type InnerDb } from '../inner'
import type { HistoryEntry } from '../history'
import { readRecords } from '../log/records'
import { valuePages } from '../value-pages'
import { userRanges } from '../user-ranges'

/**
 * The discarded-writes file that `mirror-level demote --save-discarded FILE` writes: JSON lines.
 * The first line describes the demoted store:
 *
 *   {"mirror-level":"discarded writes","format":1,"history":[[id,first],...],"head":H,"fork":F|null,"exact":true|false}
 *
 * Every other line is one key the demoted primary changed, with the value it had at its head
 * (`null`: deleted) and `seq`, the write that last changed it:
 *
 *   {"seq":102,"key":{"utf8":"user:1"},"value":{"utf8":"{\"name\":\"Ada\"}"}}
 *
 * Keys and values are `{"utf8": text}` when they are valid UTF-8, else `{"base64": bytes}`. At
 * demotion the fork is not known yet (`"fork": null`): the file then holds every key the log
 * names, a superset. When the store rejoins its new primary, the file is rewritten with the fork
 * and only the writes after it: exactly the writes the new primary never had (`"exact": true`),
 * or a superset if the log had merged writes from both sides of the fork into one record
 * (`"exact": false`). A store whose log could not name its keys gets every key (`"exact": false`),
 * and so does one that gets a full copy instead of a rejoin, just before the copy replaces its data.
 */
export interface DiscardedHeader {
  'mirror-level': 'discarded writes'
  format: 1
  history: HistoryEntry[]
  head: number
  fork: number | null
  exact: boolean
}

type Encoded = { utf8: string } | { base64: string }

export function encodeBytes (bytes: Buffer): Encoded {
  const text = bytes.toString('utf8')
  return Buffer.from(text, 'utf8').equals(bytes) ? { utf8: text } : { base64: bytes.toString('base64') }
}

export function decodeBytes (e: Encoded): Buffer {
  return 'utf8' in e ? Buffer.from(e.utf8, 'utf8') : Buffer.from(e.base64, 'base64')
}

/** A file written line by line and made durable (fsync) before it is renamed into place. */
class DurableFile {
  #fd: number
  #tmp: string
  constructor (readonly path: string) {
    // One name for the partial file: an interrupted run's is replaced, not left beside it.
    this.#tmp = `${path}.partial`
    this.#fd = openSync(this.#tmp, 'w', 0o600)
  }

  line (value: unknown): void {
    writeSync(this.#fd, JSON.stringify(value) + '\n')
  }

  commit (): void {
    fsyncSync(this.#fd)
    closeSync(this.#fd)
    renameSync(this.#tmp, this.path)
  }
}

/**
 * Saves what a primary's log names (every key its writes changed since the oldest record it
 * keeps, with its current value), before the store is demoted. Returns whether every key could be
 * named; if not (a record says "any key"), every user key of the store is saved instead.
 */
export async function saveDiscarded (db: InnerDb, path: string, history: HistoryEntry[], head: number): Promise<{ keys: number, exact: boolean, since: number }> {
  const last = new Map<string, [Buffer, number]>()
  let named = true
  // The seq the log reaches back to: writes before it are no longer named (truncated, all replicas had them).
  let since = head
  for await (const record of readRecords({ db })) {
    since = Math.min(since, record.from)
    if (record.keys === null) { named = false; break }
    for (const key of record.keys) last.set(key.toString('latin1'), [key, record.to])
  }
  const file = new DurableFile(path)
  file.line({ 'mirror-level': 'discarded writes', format: 1, history, head, fork: null, exact: named } satisfies DiscardedHeader)
  let keys = 0
  if (named) {
    const byChange = [...last.values()].sort((a, b) => a[1] - b[1] || Buffer.compare(a[0], b[0]))
    for await (const values of valuePages(db, byChange.map(([k]) => k))) {
      for (const value of values) {
        const [key, seq] = byChange[keys++]
        file.line({ seq, key: encodeBytes(key), value: value === undefined ? null : encodeBytes(value) })
      }
    }
  } else {
    keys = await writeEveryKey(db, file, head)
  }
  file.commit()
  return { keys, exact: named, since: named ? since : 0 }
}

async function writeEveryKey (db: InnerDb, file: DurableFile, head: number): Promise<number> {
  let keys = 0
  for (const range of userRanges(null, null)) {
    for await (const [key, value] of db.iterator({ ...range, ...BUFFERS })) {
      file.line({ seq: head, key: encodeBytes(key), value: encodeBytes(value) })
      keys++
    }
  }
  return keys
}

/**
 * Replaces the file with every user key of the demoted store (`exact: false`), before a full copy
 * replaces its data: the rejoin could not name the writes it made after the fork, so the file
 * saved at demotion, which holds what its log named then, may lack some of them.
 */
export async function saveEveryKey (db: InnerDb, path: string, history: HistoryEntry[], head: number): Promise<number> {
  // A copy started over (a dropped link, a request that timed out while this ran) finds the file
  // already holding the whole store at this head: a demoted store takes no writes, so it stands.
  if (isWholeStore(path, head)) return 0
  const file = new DurableFile(path)
  file.line({ 'mirror-level': 'discarded writes', format: 1, history, head, fork: null, exact: false } satisfies DiscardedHeader)
  const keys = await writeEveryKey(db, file, head)
  file.commit()
  return keys
}

// Whether the file's header says it holds every key of the store at `head` (not narrowed to a fork).
function isWholeStore (path: string, head: number): boolean {
  let fd: number | null = null
  try {
    fd = openSync(path, 'r')
    const buf = Buffer.alloc(64 * 1024)
    const n = readSync(fd, buf, 0, buf.length, 0)
    const first = buf.subarray(0, n).toString('utf8').split('\n')[0]
    const header = JSON.parse(first) as DiscardedHeader
    return header['mirror-level'] === 'discarded writes' && header.exact === false && header.fork === null && header.head === head
  } catch {
    return false
  } finally {
    if (fd !== null) closeSync(fd)
  }
}

/**
 * Rewrites the file once the fork is known: only the writes after it. `spans`: a log record
 * merged writes from both sides of the fork, so some lines may predate it (`exact: false`).
 */
export function trimDiscarded (path: string, fork: number, spans: boolean): void {
  const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l.length > 0)
  const header = JSON.parse(lines[0]) as DiscardedHeader
  const file = new DurableFile(path)
  file.line({ ...header, fork, exact: header.exact && !spans })
  for (const line of lines.slice(1)) {
    if ((JSON.parse(line) as { seq: number }).seq > fork) file.line(JSON.parse(line))
  }
  file.commit()
}

/** A demoted store's log records, for its rejoin: null if they cannot name its keys or are too many to send. */
export async function demotedRecords (db: InnerDb, maxBytes = 1024 * 1024): Promise<Array<[number, number, Buffer[]]> | null> {
  const out: Array<[number, number, Buffer[]]> = []
  let bytes = 0
  for await (const record of readRecords({ db })) {
    if (record.keys === null) return null
    bytes += record.bytes
    if (bytes > maxBytes) return null
    out.push([record.from, record.to, record.keys])
  }
  return out
}
