import type { AbstractSnapshot } from 'abstract-level'
import { HEAD_KEY, decodeHead, type Head } from './head'
import { BUFFERS, type InnerDb, type InnerOp } from '../inner'
import { logKey, logRange, seqOfLogKey } from '../keyspace'
import { decodeRecord, encodeRecord, type LogRecord } from './record-codec'

/** Where a read of the log comes from: the inner db, or an explicit snapshot of it. */
export interface LogSource {
  db: InnerDb
  snapshot?: AbstractSnapshot
}

/**
 * The log records that end after `after`, oldest first, up to and including the one ending at
 * `upto`. Streams in pages so a long log is never held whole.
 */
export async function * readRecords (source: LogSource, after = -1, upto = Infinity): AsyncGenerator<StoredRecord> {
  for await (const chunk of readRecordChunks(source, after, upto)) yield * chunk
}

const CHUNK_BYTES = 256 * 1024

/**
 * `readRecords` a few hundred at a time: an async generator costs several microtasks per item,
 * which was most of the time a catch-up spent reading a long backlog's records (and it reads them
 * several times). For the readers of whole backlogs.
 */
export async function * readRecordChunks (source: LogSource, after = -1, upto = Infinity): AsyncGenerator<StoredRecord[]> {
  const range = {
    ...(after < 0 ? { gte: logRange.gte } : { gt: logKey(after) }),
    ...(upto === Infinity ? { lt: logRange.lt } : { lte: logKey(upto) })
  }
  const it = source.db.iterator({ ...range, ...BUFFERS, snapshot: source.snapshot })
  try {
    while (true) {
      const entries: Array<[Buffer, Buffer]> = await it.nextv(256)
      if (entries.length === 0) return
      // Decoded keys cost an object each: a chunk of large records is handed over before it
      // holds more than a record or CHUNK_BYTES of them.
      let chunk: StoredRecord[] = []
      let bytes = 0
      for (const [key, value] of entries) {
        const { from, to, keys } = decodeRecord(seqOfLogKey(key), value)
        chunk.push({ from, to, keys, bytes: key.length + value.length })
        bytes += value.length
        if (bytes >= CHUNK_BYTES) {
          yield chunk
          chunk = []
          bytes = 0
        }
      }
      if (chunk.length > 0) yield chunk
    }
  } finally {
    await it.close()
  }
}

/**
 * The primary's head as it is stored: the meta key `head` is written now and then (every
 * HEAD_EVERY commits, and with every log maintenance step), not with every write, so the seqs and
 * bytes of the records after it are added to it. Null if the store holds no head.
 */
export async function storedHead (source: LogSource): Promise<Head | null> {
  const raw = await source.db.get(HEAD_KEY, { ...BUFFERS, snapshot: source.snapshot })
  if (raw === undefined) return null
  const head = decodeHead(raw)
  for await (const record of readRecords(source, head.seq)) {
    head.seq = Math.max(head.seq, record.to)
    head.logBytes += record.bytes
  }
  return head
}

/** The last committed seq of a (snapshot of a) primary's store: the head key or the newest record after it. */
export async function headSeq (source: LogSource): Promise<number> {
  const raw = await source.db.get(HEAD_KEY, { ...BUFFERS, snapshot: source.snapshot })
  const stored = raw === undefined ? 0 : decodeHead(raw).seq
  const last = await source.db.keys({ ...logRange, keyEncoding: 'buffer', reverse: true, limit: 1, snapshot: source.snapshot }).all()
  return last.length === 0 ? stored : Math.max(stored, seqOfLogKey(last[0]))
}

/** How often a commit also writes the head: opening reads at most this many records past it. */
export const HEAD_EVERY = 128

/** A record as stored, with its size in bytes (key and value). */
export interface StoredRecord extends LogRecord {
  bytes: number
}

export interface CompactionLimits {
  /** The log's byte budget: compaction runs while the log is larger. */
  budget: number
  /** At most this many records are merged in one atomic step. */
  maxRecordsPerStep: number
  /**
   * No record ends at or before this seq (they were truncated): reading starts after it, instead
   * of walking through the deleted records LevelDB keeps until it compacts them away.
   */
  after?: number
}

/**
 * One atomic compaction step: merges the oldest records, enough of them to bring the log down to
 * half its budget, into one record with the union of their keys. If that union would itself take
 * more than a quarter of the budget, or a single record cannot shrink by merging, the merged record
 * says "any key" (a full sync for a replica that needs it). Returns the ops and the new log size, or
 * null when there is nothing to merge.
 */
export async function compactionStep (db: InnerDb, head: Head, limits: CompactionLimits): Promise<{ ops: InnerOp[], logBytes: number } | null> {
  const need = head.logBytes - Math.floor(limits.budget / 2)
  const unionCap = Math.max(1, Math.floor(limits.budget / 4))
  const union = new Map<string, Buffer>()
  let unionBytes = 0
  let all = false
  let taken = 0
  let takenBytes = 0
  let from = 0
  let to = 0
  const ops: InnerOp[] = []

  records: for await (const chunk of readRecordChunks({ db }, limits.after ?? -1)) {
    for (const record of chunk) {
      if (taken === 0) from = record.from
      to = record.to
      taken++
      takenBytes += record.bytes
      ops.push({ type: 'del', key: logKey(record.to) })
      if (!all && record.keys === null) all = true
      if (!all) {
        for (const key of record.keys!) {
          const id = key.toString('latin1')
          if (!union.has(id)) {
            union.set(id, key)
            unionBytes += key.length + 2
          }
        }
        if (unionBytes > unionCap) {
          all = true
          union.clear()
        }
      }
      if (takenBytes >= need || taken >= limits.maxRecordsPerStep) break records
    }
  }
  if (taken === 0) return null
  // Merging one record into itself saves nothing; only "any key" makes progress then.
  if (taken === 1) all = true

  const merged = encodeRecord(from, all ? null : [...union.values()])
  ops.pop() // the newest taken record's key is overwritten by the merged record
  ops.push({ type: 'put', key: logKey(to), value: merged })
  return { ops, logBytes: head.logBytes - takenBytes + logKey(to).length + merged.length }
}

/**
 * One atomic truncation step: deletes up to `maxRecords` of the oldest records that end at or
 * before `upto` (every replica has applied them), reading after `after` (records up to it are
 * already gone). Null when there are none.
 */
export async function truncationStep (db: InnerDb, head: Head, after: number, upto: number, maxRecords: number): Promise<{ ops: InnerOp[], logBytes: number, through: number } | null> {
  const ops: InnerOp[] = []
  let bytes = 0
  let through = after
  records: for await (const chunk of readRecordChunks({ db }, after, upto)) {
    for (const record of chunk) {
      through = record.to
      ops.push({ type: 'del', key: logKey(record.to) })
      bytes += record.bytes
      if (ops.length >= maxRecords) break records
    }
  }
  return ops.length === 0 ? null : { ops, logBytes: head.logBytes - bytes, through }
}
