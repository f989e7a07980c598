import { constants } from 'node:buffer'
import type { AbstractLevel } from 'abstract-level'
import { Packr } from 'msgpackr'
import { ChunkLocks } from './chunk-locks'
import { MirrorError, codes } from '../errors'
import { BUFFERS } from '../inner'
import { readSeq, writeSeq } from '../keyspace'
import { describe, knownOptions, positiveInteger } from '../options'

const packr = new Packr({ useRecords: false, mapsAsObjects: true })
const CHUNK = 0x63 // 'c': chunk keys are 'c' + 8-byte big-endian index, so key order is offset order
const META_KEY = Buffer.from('meta', 'latin1')
const FORMAT = 1
const MAX_CHUNK_SIZE = 64 * 1024 * 1024
const MAX_READ = constants.MAX_LENGTH

/** Options of {@link BlockDevice}. */
export interface BlockDeviceOptions {
  /** Size in bytes. Required for a new device; on reopen it may grow the device, never shrink it. */
  size?: number
  /** Bytes per chunk (the unit stored under one key). Default 4096. Fixed when the device is created. */
  chunkSize?: number
}

interface DeviceMeta {
  format: number
  size: number
  chunkSize: number
}

type ChunkOp = { type: 'put', key: Buffer, value: Buffer } | { type: 'del', key: Buffer }

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyLevel = AbstractLevel<any, any, any>

/**
 * A block device stored as fixed-size chunks in an abstract-level db, normally a MirrorLevel (or a
 * sublevel of one), so that every write is mirrored. A write is one atomic batch of the db, so a
 * mirror never holds half of one. All-zero chunks are stored as holes (absent keys).
 */
export class BlockDevice {
  #db: AnyLevel
  #options: BlockDeviceOptions
  #size = 0
  #chunkSize = 0
  #zero = Buffer.alloc(0)
  #open = false
  #locks = new ChunkLocks()
  #pending = new Set<Promise<unknown>>()

  constructor (db: AnyLevel, options: BlockDeviceOptions = {}) {
    if (typeof db !== 'object' || db === null || typeof (db as AnyLevel).batch !== 'function') {
      throw new MirrorError(`BlockDevice: the first argument must be an abstract-level database, got ${describe(db)}`, codes.INVALID_OPTION)
    }
    if (typeof options !== 'object' || options === null) {
      throw new MirrorError(`BlockDevice: options must be an object, got ${describe(options)}`, codes.INVALID_OPTION)
    }
    // A misspelt 'chunksize' would create the device with the default, fixed from then on.
    knownOptions('BlockDevice', options, ['size', 'chunkSize'])
    if (options.size !== undefined) positiveInteger('BlockDevice', 'size', options.size)
    if (options.chunkSize !== undefined) {
      positiveInteger('BlockDevice', 'chunkSize', options.chunkSize)
      if (options.chunkSize > MAX_CHUNK_SIZE) {
        throw new MirrorError(`BlockDevice: option 'chunkSize' must be at most ${MAX_CHUNK_SIZE}, got ${options.chunkSize}`, codes.INVALID_OPTION)
      }
    }
    this.#db = db
    this.#options = { ...options }
  }

  /** The device size in bytes (0 until opened). */
  get size (): number { return this.#size }

  /** The chunk size in bytes (0 until opened). */
  get chunkSize (): number { return this.#chunkSize }

  /**
   * Opens the db if needed, then creates the device or checks the stored one: a different
   * `chunkSize` or a smaller `size` is refused with `MIRROR_DEVICE_MISMATCH`; a larger size grows it.
   */
  async open (): Promise<void> {
    if (this.#open) return
    await this.#db.open()
    const stored = await this.#db.get(META_KEY, BUFFERS)
    const meta = stored === undefined ? null : decodeMeta(stored)
    const { size, chunkSize } = this.#options
    if (meta === null) {
      if (size === undefined) {
        throw new MirrorError('BlockDevice: a new device needs the option \'size\'', codes.INVALID_OPTION)
      }
      await this.#putMeta({ format: FORMAT, size, chunkSize: chunkSize ?? 4096 })
    } else {
      if (chunkSize !== undefined && chunkSize !== meta.chunkSize) {
        throw new MirrorError(`BlockDevice: the device has chunkSize ${meta.chunkSize}, not ${chunkSize}`, codes.DEVICE_MISMATCH)
      }
      if (size !== undefined && size < meta.size) {
        throw new MirrorError(`BlockDevice: the device has size ${meta.size}; it cannot shrink to ${size}`, codes.DEVICE_MISMATCH)
      }
      if (size !== undefined && size > meta.size) await this.#putMeta({ ...meta, size })
      else this.#setMeta(meta)
    }
    this.#open = true
  }

  async #putMeta (meta: DeviceMeta): Promise<void> {
    await this.#db.put(META_KEY, packr.pack(meta), BUFFERS)
    this.#setMeta(meta)
  }

  #setMeta (meta: DeviceMeta): void {
    this.#size = meta.size
    this.#chunkSize = meta.chunkSize
    this.#zero = Buffer.alloc(meta.chunkSize)
  }

  /** Reads `length` bytes at `offset`. Holes read as zeros. */
  async read (offset: number, length: number): Promise<Buffer> {
    this.#check(offset, length)
    if (length > MAX_READ) {
      throw new MirrorError(`BlockDevice: one read returns at most ${MAX_READ} bytes (one Buffer), got ${length}`, codes.OUT_OF_RANGE)
    }
    const out = Buffer.alloc(length)
    if (length === 0) return out
    const cs = this.#chunkSize
    const first = Math.floor(offset / cs)
    const last = Math.floor((offset + length - 1) / cs)
    const it = this.#db.iterator({ gte: chunkKey(first), lte: chunkKey(last), ...BUFFERS })
    try {
      while (true) {
        const entries = await it.nextv(64)
        if (entries.length === 0) break
        for (const [key, value] of entries) {
          const start = readSeq(key, 1) * cs
          const from = Math.max(offset, start)
          const to = Math.min(offset + length, start + cs)
          ;(value as Buffer).copy(out, from - offset, from - start, to - start)
        }
      }
    } finally {
      await it.close()
    }
    return out
  }

  /**
   * Writes `data` at `offset` as one atomic batch. `data` is copied when `write` is called, so it may
   * be reused or changed as soon as the call returns.
   */
  async write (offset: number, data: Uint8Array): Promise<void> {
    if (!(data instanceof Uint8Array)) {
      throw new MirrorError(`BlockDevice: data must be a Buffer or Uint8Array, got ${describe(data)}`, codes.INVALID_OPTION)
    }
    this.#check(offset, data.length)
    if (data.length === 0) return
    // The batch is built only once the chunk locks are granted, and memory-level (like a MirrorLevel
    // waiting to commit) keeps the very Buffers it is given, so a view of the caller's memory would
    // store whatever the caller puts there later. Not from the pool: a stored chunk must not pin a
    // pool slab shared with unrelated Buffers.
    const bytes = Buffer.allocUnsafeSlow(data.byteLength)
    bytes.set(data)
    await this.#track(this.#change(offset, data.length, bytes))
  }

  /**
   * Zeroes `length` bytes at `offset`; whole chunks become holes. One atomic batch that deletes only
   * the chunks stored in the range, so its cost follows them, not the range's length. A trim that
   * changes nothing commits nothing (no seq, no log record).
   */
  async trim (offset: number, length: number): Promise<void> {
    this.#check(offset, length)
    if (length === 0) return
    await this.#track(this.#change(offset, length, null))
  }

  /**
   * Resolves once every write and trim started before it has settled, and they are durable on disk
   * where the db supports it (classic-level: one `sync` write flushes everything before it).
   */
  async flush (): Promise<void> {
    this.#assertOpen()
    await Promise.allSettled([...this.#pending])
    await this.#db.put(META_KEY, packr.pack({ format: FORMAT, size: this.#size, chunkSize: this.#chunkSize }), { ...BUFFERS, sync: true } as typeof BUFFERS)
  }

  /** Waits for pending writes and closes the device. The db stays open: it is the caller's. */
  async close (): Promise<void> {
    if (!this.#open) return
    this.#open = false
    await Promise.allSettled([...this.#pending])
  }

  #track<T> (promise: Promise<T>): Promise<T> {
    this.#pending.add(promise)
    const untrack = (): void => { this.#pending.delete(promise) }
    promise.then(untrack, untrack)
    return promise
  }

  // Writes `source` (a write's own copy of its data, so whole chunks are stored without copying
  // again) or, if it is null, zeros (trim) over [offset, offset + length), in one batch. The range
  // lock is held from before the edge chunks are read until the batch has committed.
  async #change (offset: number, length: number, source: Buffer | null): Promise<void> {
    const cs = this.#chunkSize
    const end = offset + length
    const first = Math.floor(offset / cs)
    const last = Math.floor((end - 1) / cs)
    const release = await this.#locks.acquire(first, last)
    try {
      const covers = (i: number): boolean => offset <= i * cs && end >= (i + 1) * cs
      const partial: number[] = []
      if (!covers(first)) partial.push(first)
      if (last !== first && !covers(last)) partial.push(last)
      const old = partial.length > 0 ? await this.#db.getMany(partial.map(chunkKey), BUFFERS) : []
      const ops: ChunkOp[] = []
      for (let p = 0; p < partial.length; p++) {
        const i = partial[p]
        const start = i * cs
        const from = Math.max(offset, start) - start
        const to = Math.min(end, start + cs) - start
        const was = old[p] as Buffer | undefined
        // Zeroing bytes that are zero already changes nothing, so it adds nothing to the batch (or the log).
        if (source === null && (was === undefined || was.subarray(from, to).equals(this.#zero.subarray(from, to)))) continue
        const chunk = Buffer.alloc(cs)
        if (was !== undefined) was.copy(chunk)
        if (source === null) chunk.fill(0, from, to)
        else source.copy(chunk, from, start + from - offset, start + to - offset)
        ops.push(chunk.equals(this.#zero) ? { type: 'del', key: chunkKey(i) } : { type: 'put', key: chunkKey(i), value: chunk })
      }
      const lo = covers(first) ? first : first + 1
      const hi = covers(last) ? last : last - 1
      if (lo <= hi) {
        if (source === null) {
          // Only the chunks that exist are deleted, so a trim costs what the range holds, not its
          // length (a hole-only trim of 2^34 bytes would otherwise be four million dels). No
          // write can add a chunk in the range while this lock is held.
          const it = this.#db.keys({ gte: chunkKey(lo), lte: chunkKey(hi), ...BUFFERS })
          try {
            while (true) {
              const keys = await it.nextv(1024)
              if (keys.length === 0) break
              for (const key of keys) ops.push({ type: 'del', key: key as Buffer })
            }
          } finally {
            await it.close()
          }
        } else {
          for (let i = lo; i <= hi; i++) {
            const chunk = source.subarray(i * cs - offset, (i + 1) * cs - offset)
            ops.push(chunk.equals(this.#zero) ? { type: 'del', key: chunkKey(i) } : { type: 'put', key: chunkKey(i), value: chunk })
          }
        }
      }
      // A trim that changes nothing commits nothing (no seq, no log record), as documented; abstract-level
      // would skip an empty batch too, but this must not depend on the db.
      if (ops.length > 0) await this.#db.batch(ops, BUFFERS)
    } finally {
      release()
    }
  }

  #check (offset: unknown, length: unknown): void {
    this.#assertOpen()
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
      throw new MirrorError(`BlockDevice: offset must be a non-negative integer, got ${describe(offset)}`, codes.OUT_OF_RANGE)
    }
    if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) {
      throw new MirrorError(`BlockDevice: length must be a non-negative integer, got ${describe(length)}`, codes.OUT_OF_RANGE)
    }
    if (offset + length > this.#size) {
      throw new MirrorError(`BlockDevice: ${length} bytes at offset ${offset} run past the end of the device (${this.#size} bytes)`, codes.OUT_OF_RANGE)
    }
  }

  #assertOpen (): void {
    if (!this.#open) throw new MirrorError('BlockDevice is not open', codes.NOT_OPEN)
  }
}

function chunkKey (index: number): Buffer {
  const key = Buffer.allocUnsafe(9)
  key[0] = CHUNK
  writeSeq(key, 1, index)
  return key
}

function decodeMeta (value: Uint8Array): DeviceMeta {
  let meta: DeviceMeta
  try {
    meta = packr.unpack(value)
  } catch (err) {
    throw new MirrorError('BlockDevice: the stored device header cannot be decoded', codes.CORRUPT, { cause: err })
  }
  if (typeof meta !== 'object' || meta === null || !Number.isSafeInteger(meta.size) || !Number.isSafeInteger(meta.chunkSize) || meta.chunkSize <= 0) {
    throw new MirrorError('BlockDevice: the stored device header is malformed', codes.CORRUPT)
  }
  if (meta.format > FORMAT) {
    throw new MirrorError(`BlockDevice: the device was written by a newer mirror-level (format ${meta.format})`, codes.CORRUPT)
  }
  return meta
}
