import { crc32 } from 'node:zlib'
import { Packr } from 'msgpackr'
import type { BatchPart, ReplicaOp } from '../adapter'
import { FRAME_HEADER_BYTES } from './protocol'

const packr = new Packr({ useRecords: false, mapsAsObjects: true })

// Values at least this large go out as they are, referenced, not copied into the frame. Smaller
// ones are copied: every chunk costs a CRC call and an iovec, and in the live benchmark referencing
// 1 KiB values (a cut at 512 bytes) was no cheaper than copying them.
const REFERENCE_BYTES = 64 * 1024
// Room for the header bytes of one op: a map header and its short field names, tags and lengths.
const OP_OVERHEAD = 32

/**
 * A part message as a frame, in chunks: a 4-byte length, the CRC-32 and one msgpack map, which
 * `FrameDecoder` decodes to the same message as `encodeFrame`'s frame (the bytes differ only in
 * the header forms msgpack allows), without copying the ops' larger values into it. A live part is
 * megabytes of values the primary holds anyway; packing them as objects into a growing buffer cost
 * it more CPU than anything else on the way to the socket. The chunks are written with one
 * `writev`; the receiving side decodes them as any frame.
 */
export function encodePartFrame (message: { t: 'part', id: number, part: BatchPart }): Buffer[] {
  return encodePartFrameInto(message, null).chunks
}

/**
 * `encodePartFrame` into a buffer from `scratch`; call `done()` once nothing refers to the chunks
 * any more (the socket has taken them), and the buffer is used again.
 */
export function encodePartFrameInto (message: { t: 'part', id: number, part: BatchPart }, scratch: FrameScratch | null): { chunks: Buffer[], done: () => void } {
  const w = new ChunkWriter(estimate(message.part.ops), scratch)
  w.reserve(FRAME_HEADER_BYTES)
  const keys = Object.keys(message) as Array<keyof typeof message>
  w.mapHeader(keys.length)
  for (const key of keys) {
    w.str(key)
    if (key === 'part') writePart(w, message.part)
    else w.raw(packr.pack(message[key]))
  }
  const chunks = w.finish()
  const taken = w.scratch
  return { chunks, done: () => { if (taken !== null) scratch?.give(taken) } }
}

function writePart (w: ChunkWriter, part: BatchPart): void {
  const keys = Object.keys(part) as Array<keyof BatchPart>
  w.mapHeader(keys.length)
  for (const key of keys) {
    w.str(key)
    if (key !== 'ops') {
      w.raw(packr.pack(part[key]))
      continue
    }
    w.arrayHeader(part.ops.length)
    for (const op of part.ops) writeOp(w, op)
  }
}

// As msgpackr packs an op object: its fields in order, `more` only when set. The fixed bytes around
// the key and value are written as they are, not as strings encoded again for every op.
function writeOp (w: ChunkWriter, op: ReplicaOp): void {
  if (op.type === 'del') {
    w.raw(DEL_HEAD)
    w.bin(op.key)
    return
  }
  const more = op.more === true
  w.raw(more ? MORE_PUT_HEAD : PUT_HEAD)
  w.bin(op.key)
  w.raw(VALUE_FIELD)
  w.bin(op.value)
  if (more) w.raw(MORE_FIELD)
}

// msgpack of `{ type: 'del', key: ` up to the key's bytes, and so on for the other fields.
const fixed = (fields: number, ...strings: string[]): Buffer => Buffer.concat([
  ...(fields > 0 ? [Buffer.from([0x80 | fields])] : []),
  ...strings.map((s) => Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s)]))
])
const DEL_HEAD = fixed(2, 'type', 'del', 'key')
const PUT_HEAD = fixed(3, 'type', 'put', 'key')
const MORE_PUT_HEAD = fixed(4, 'type', 'put', 'key')
const VALUE_FIELD = fixed(0, 'value')
const MORE_FIELD = Buffer.concat([fixed(0, 'more'), Buffer.from([0xc3])])

// The bytes the small parts of the frame take: everything but the referenced values.
function estimate (ops: ReplicaOp[]): number {
  let n = 1024
  for (const op of ops) {
    n += OP_OVERHEAD + op.key.length
    if (op.type === 'put' && op.value.length < REFERENCE_BYTES) n += op.value.length
  }
  return n
}

/**
 * Buffers to encode part frames into, used again once the socket has taken a frame's bytes: a
 * fresh megabyte for every part, its pages faulted in as the frame was written, made encoding 1 KiB
 * ops 2.6 times slower (2.5 ms against 0.97 ms for 3200 of them). A buffer is handed back only
 * from the callback of the frame's last write, so one that never completes is simply not reused.
 */
export class FrameScratch {
  #free: Buffer[] = []

  /** A buffer of at least `size` bytes; give it back with `give` when nothing refers to it. */
  take (size: number): Buffer {
    const i = this.#free.findIndex((b) => b.length >= size)
    if (i !== -1) return this.#free.splice(i, 1)[0]
    return Buffer.allocUnsafeSlow(Math.max(size, MIN_SCRATCH))
  }

  give (buffer: Buffer): void {
    // A part larger than the default bound (a raised maxBatchBytes) is not kept for the link's life.
    if (buffer.length > KEPT_SCRATCH_BYTES) return
    if (this.#free.length < KEPT_SCRATCH) return void this.#free.push(buffer)
    // Full: keep the larger ones, so that frames grown past the first buffers are reused too.
    const smallest = this.#free.reduce((a, b, i) => (b.length < this.#free[a].length ? i : a), 0)
    if (this.#free[smallest].length < buffer.length) this.#free[smallest] = buffer
  }
}

// A part frame is at most `maxBatchBytes` (4 MiB by default) and the values it references: a few
// buffers of that size cover the parts in flight (one sent, one read ahead).
const MIN_SCRATCH = 256 * 1024
const KEPT_SCRATCH = 3
const KEPT_SCRATCH_BYTES = 8 * 1024 * 1024

/** Writes msgpack into a scratch buffer, leaving large binaries out as chunks of their own. */
class ChunkWriter {
  #chunks: Buffer[] = []
  #buf: Buffer
  #start = 0
  #pos = 0
  /** The buffer taken from the scratch, if one was (the chunks before any growth point into it). */
  readonly scratch: Buffer | null

  constructor (size: number, scratch: FrameScratch | null) {
    this.scratch = scratch?.take(size) ?? null
    this.#buf = this.scratch ?? Buffer.allocUnsafe(size)
  }

  #room (n: number): void {
    if (this.#pos + n <= this.#buf.length) return
    this.#cut()
    this.#buf = Buffer.allocUnsafe(Math.max(n, 64 * 1024))
    this.#start = 0
    this.#pos = 0
  }

  #cut (): void {
    if (this.#pos > this.#start) this.#chunks.push(this.#buf.subarray(this.#start, this.#pos))
    this.#start = this.#pos
  }

  reserve (n: number): void {
    this.#room(n)
    this.#pos += n
  }

  byte (b: number): void {
    this.#room(1)
    this.#buf[this.#pos++] = b
  }

  raw (bytes: Uint8Array): void {
    this.#room(bytes.length)
    this.#buf.set(bytes, this.#pos)
    this.#pos += bytes.length
  }

  // A msgpack header: the one-byte form below `fixLimit` (none when 0), else 8, 16 or 32-bit lengths.
  #sized (n: number, fixLimit: number, fixTag: number, tag8: number | null, tag16: number, tag32: number): void {
    this.#room(5)
    const b = this.#buf
    if (n < fixLimit) {
      b[this.#pos++] = fixTag | n
    } else if (tag8 !== null && n <= 0xff) {
      b[this.#pos++] = tag8
      b[this.#pos++] = n
    } else if (n <= 0xffff) {
      b[this.#pos++] = tag16
      b.writeUInt16BE(n, this.#pos)
      this.#pos += 2
    } else {
      b[this.#pos++] = tag32
      b.writeUInt32BE(n, this.#pos)
      this.#pos += 4
    }
  }

  mapHeader (n: number): void { this.#sized(n, 16, 0x80, null, 0xde, 0xdf) }
  arrayHeader (n: number): void { this.#sized(n, 16, 0x90, null, 0xdc, 0xdd) }

  str (s: string): void {
    const n = Buffer.byteLength(s)
    this.#sized(n, 32, 0xa0, 0xd9, 0xda, 0xdb)
    this.#room(n)
    this.#pos += this.#buf.write(s, this.#pos)
  }

  bin (bytes: Buffer): void {
    this.#sized(bytes.length, 0, 0, 0xc4, 0xc5, 0xc6)
    if (bytes.length < REFERENCE_BYTES) return this.raw(bytes)
    this.#cut()
    this.#chunks.push(bytes)
  }

  /** The chunks, with the frame header (length and CRC-32 of the payload) in the reserved bytes. */
  finish (): Buffer[] {
    this.#cut()
    const chunks = this.#chunks
    let length = -FRAME_HEADER_BYTES
    let crc = 0
    for (let i = 0; i < chunks.length; i++) {
      const payload = i === 0 ? chunks[0].subarray(FRAME_HEADER_BYTES) : chunks[i]
      length += chunks[i].length
      crc = crc32(payload, crc)
    }
    chunks[0].writeUInt32BE(length, 0)
    chunks[0].writeUInt32BE(crc, 4)
    return chunks
  }
}
