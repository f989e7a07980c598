import { createHmac, timingSafeEqual } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { Packr, RESERVE_START_SPACE } from 'msgpackr'
import type { ReplicaHello } from '../adapter'
import { isHistory, type HistoryEntry } from '../history'
import { MirrorError, codes } from '../errors'

/**
 * The wire protocol between a primary (TcpReplica) and `mirror-level serve`.
 *
 * A frame is a 4-byte big-endian payload length, the payload's CRC-32 (4 bytes, big-endian) and
 * the payload: one msgpack map with a type `t`. The server speaks first with a fresh nonce; the
 * client answers with its own nonce and an HMAC proving it holds the key; the server answers with
 * an HMAC over both nonces the other way round. Nothing else is accepted before that, and a
 * recorded handshake cannot be replayed: the other side's nonce is new every time.
 */
export const PROTOCOL_VERSION = 1
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
/** A frame limit below this could not carry the protocol's own messages (a hello with its history). */
export const MIN_FRAME_BYTES = 64 * 1024
/** The frame header: the payload's length and its CRC-32, 4 bytes each, big-endian. */
export const FRAME_HEADER_BYTES = 8
const HEADER = FRAME_HEADER_BYTES

const packr = new Packr({ useRecords: false, mapsAsObjects: true })

export type Message = Record<string, unknown> & { t: string }

export function encodeFrame (message: Message): Buffer {
  // msgpackr leaves the header's bytes free in front of the payload: a part of several MiB is not
  // copied once more to put eight bytes before it. (What it returns is never written again.)
  const frame = packr.pack(message, RESERVE_START_SPACE | HEADER)
  const payload = frame.subarray(HEADER)
  frame.writeUInt32BE(payload.length, 0)
  frame.writeUInt32BE(crc32(payload), 4)
  return frame
}

/**
 * Splits a byte stream into messages. Holds at most one frame's bytes; a frame larger than the
 * limit, a checksum mismatch or a payload that is not a message is a protocol error: `push()`
 * returns the messages before it and sets `error`, and the caller closes the connection after
 * handling them.
 */
export class FrameDecoder {
  #chunks: Buffer[] = []
  #buffered = 0
  #max: number
  /** The protocol error that ended the stream, if any; nothing is decoded after it. */
  error: MirrorError | null = null

  constructor (maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {
    this.#max = maxFrameBytes
  }

  /** Bytes held for an incomplete frame. */
  get buffered (): number { return this.#buffered }

  /** The largest frame accepted from now on (a server raises it once a peer has authenticated). */
  set limit (bytes: number) { this.#max = bytes }

  /** The payload length of the frame being received, once its header has arrived; 0 between frames. */
  get pendingLength (): number {
    if (this.#buffered < HEADER) return 0
    return this.#peek(HEADER).readUInt32BE(0)
  }

  push (chunk: Buffer): Message[] {
    return this.pushSized(chunk).map((m) => m.message)
  }

  /** As `push`, with each message's frame size. */
  pushSized (chunk: Buffer): Array<{ message: Message, bytes: number }> {
    const out: Array<{ message: Message, bytes: number }> = []
    if (this.error !== null) return out
    this.#chunks.push(chunk)
    this.#buffered += chunk.length
    while (this.#buffered >= HEADER) {
      const head = this.#peek(HEADER)
      const length = head.readUInt32BE(0)
      if (length > this.#max) return this.#stop(out, `frame of ${length} bytes exceeds the limit of ${this.#max}`)
      if (this.#buffered < HEADER + length) break
      const frame = this.#take(HEADER + length)
      const payload = frame.subarray(HEADER)
      if (crc32(payload) !== frame.readUInt32BE(4)) return this.#stop(out, 'frame checksum mismatch')
      let message: unknown
      try {
        message = packr.unpack(payload)
      } catch {
        return this.#stop(out, 'frame payload is not msgpack')
      }
      if (typeof message !== 'object' || message === null || typeof (message as Message).t !== 'string') {
        return this.#stop(out, 'frame payload is not a message')
      }
      out.push({ message: message as Message, bytes: HEADER + length })
    }
    return out
  }

  #stop<T> (out: T[], why: string): T[] {
    this.error = protocolError(why)
    this.#chunks = []
    this.#buffered = 0
    return out
  }

  #peek (n: number): Buffer {
    if (this.#chunks[0].length < n) this.#chunks = [Buffer.concat(this.#chunks)]
    return this.#chunks[0].subarray(0, n)
  }

  #take (n: number): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks)
    const frame = all.subarray(0, n)
    const rest = all.subarray(n)
    this.#chunks = rest.length > 0 ? [rest] : []
    this.#buffered = rest.length
    return frame
  }
}

export function protocolError (message: string): MirrorError {
  return new MirrorError(`Protocol error: ${message}`, codes.PROTOCOL)
}

/** The key as users write it (a key file's text, whitespace around it ignored), as HMAC bytes. */
export function keyBytes (text: string | Buffer): Buffer {
  if (typeof text !== 'string' && !Buffer.isBuffer(text)) {
    throw new MirrorError('The pre-shared key must be text (a string, or a Buffer read from the key file)', codes.INVALID_OPTION)
  }
  const trimmed = (typeof text === 'string' ? text : text.toString('utf8')).trim()
  if (trimmed.length < 16) {
    throw new MirrorError('The pre-shared key must be at least 16 characters (make one with `mirror-level keygen`)', codes.INVALID_OPTION)
  }
  return Buffer.from(trimmed, 'utf8')
}

export function proof (key: Buffer, role: 'client' | 'server', mine: Uint8Array, theirs: Uint8Array, resource: string): Buffer {
  return createHmac('sha256', key)
    .update(`mirror-level/${PROTOCOL_VERSION} ${role}\0${resource}\0`)
    .update(mine)
    .update(theirs)
    .digest()
}

export function proofMatches (expected: Buffer, got: unknown): boolean {
  return got instanceof Uint8Array && got.length === expected.length && timingSafeEqual(expected, got)
}

/** Resource names are one path segment: letters, digits, '.', '_' and '-', not starting with '.'. */
export function validResource (name: unknown): name is string {
  return typeof name === 'string' && /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/.test(name)
}

/** A replica's hello as it arrives from a server, shape-checked; a malformed one is a protocol error. */
export function checkHello (value: unknown): ReplicaHello {
  const h = value as Record<string, unknown>
  const seq = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
  const d = h?.demoted as Record<string, unknown> | null | undefined
  const records = d?.records
  const ok = typeof h === 'object' && h !== null &&
    (h.generation === null || (typeof h.generation === 'string' && h.generation.length > 0)) && seq(h.watermark) &&
    (h.pending === null || h.pending === undefined || (typeof h.pending === 'object' && seq((h.pending as Record<string, unknown>).to) &&
      seq((h.pending as Record<string, unknown>).parts) && typeof (h.pending as Record<string, unknown>).generation === 'string' &&
      ((h.pending as Record<string, unknown>).from === undefined || seq((h.pending as Record<string, unknown>).from)))) &&
    (h.foreign === undefined || h.foreign === null || h.foreign === 'data' || h.foreign === 'primary') &&
    (h.maxPartBytes === undefined || (seq(h.maxPartBytes) && (h.maxPartBytes as number) > 0)) &&
    (h.checksum === undefined || h.checksum === null || typeof h.checksum === 'string') &&
    (d === undefined || d === null || (typeof d === 'object' && isHistory(d.history) && seq(d.head) &&
      (records === null || (Array.isArray(records) && records.every((r) => Array.isArray(r) && r.length === 3 && seq(r[0]) && seq(r[1]) &&
        Array.isArray(r[2]) && (r[2] as unknown[]).every((k) => k instanceof Uint8Array))))))
  if (!ok) throw protocolError('the server sent a malformed hello')
  const pending = h.pending as ReplicaHello['pending'] | undefined
  return {
    generation: h.generation as string | null,
    watermark: h.watermark as number,
    pending: pending === undefined || pending === null ? null : readPending(pending),
    foreign: (h.foreign as ReplicaHello['foreign']) ?? null,
    checksum: typeof h.checksum === 'string' ? h.checksum : null,
    demoted: d === undefined || d === null
      ? null
      : {
          history: d.history as HistoryEntry[],
          head: d.head as number,
          records: records === null ? null : (records as Array<[number, number, Uint8Array[]]>).map(([from, to, keys]) => [from, to, keys.map((k) => Buffer.from(k))])
        },
    ...(h.maxPartBytes !== undefined ? { maxPartBytes: h.maxPartBytes as number } : {})
  }
}

// Only the fields a pending batch has: a hello is read from the network.
function readPending (p: NonNullable<ReplicaHello['pending']>): NonNullable<ReplicaHello['pending']> {
  const out: NonNullable<ReplicaHello['pending']> = { to: p.to, generation: p.generation, parts: p.parts, upto: p.upto === null || p.upto === undefined ? null : Buffer.from(p.upto) }
  if (p.from !== undefined) out.from = p.from
  return out
}
