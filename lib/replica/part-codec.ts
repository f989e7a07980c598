import { Packr } from 'msgpackr'
import type { BatchPart, ReplicaOp } from '../adapter'
import { MirrorError, codes } from '../errors'
import { isHistory } from '../history'
import { isReserved } from '../keyspace'

const packr = new Packr({ useRecords: false, mapsAsObjects: true })

const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array
const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

function bad (why: string): MirrorError {
  return new MirrorError(`Bad batch part: ${why}`, codes.BAD_PART)
}

const asBuffer = (v: Uint8Array): Buffer => Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)

/**
 * Checks a part from anywhere (a primary in this process or a frame off the network) and returns
 * it with Buffers. Anything malformed, or an op inside the reserved range, is refused before a
 * single byte is written.
 */
export function validatePart (input: unknown): BatchPart {
  if (typeof input !== 'object' || input === null) throw bad('not an object')
  const p = input as Record<string, unknown>
  if (typeof p.generation !== 'string' || p.generation.length === 0 || p.generation.length > 64) throw bad('generation must be a short string')
  if (!isSeq(p.from) || !isSeq(p.to)) throw bad('from and to must be non-negative integers')
  if (typeof p.full !== 'boolean' || typeof p.final !== 'boolean') throw bad('full and final must be booleans')
  if (p.repair !== undefined && p.repair !== null && (typeof p.repair !== 'boolean' || (p.repair && (p.full || p.to !== p.from)))) throw bad('a repair is an incremental batch from and to the same seq')
  // A rejoin may reach no further than its fork (a new primary that has not written yet): it
  // still takes the demoted primary's own changes back.
  if (!p.full && p.repair !== true && p.to <= p.from && !(p.rejoin !== undefined && p.rejoin !== null && p.to === p.from)) {
    throw bad(`an incremental batch must end after it starts (from ${p.from}, to ${p.to})`)
  }
  if (!isSeq(p.index)) throw bad('index must be a non-negative integer')
  if (!Array.isArray(p.ops)) throw bad('ops must be an array')
  if (p.overwrite !== undefined && p.overwrite !== null && typeof p.overwrite !== 'boolean') throw bad('overwrite must be a boolean')
  if (p.overwrite === true && (!p.full || p.index !== 0)) throw bad('only the first part of a full batch can overwrite')
  if (p.ordered !== undefined && p.ordered !== null && (typeof p.ordered !== 'boolean' || (p.ordered && p.full))) throw bad('ordered is a boolean, for incremental batches')
  if (p.refresh !== undefined && p.refresh !== null && (typeof p.refresh !== 'boolean' || (p.refresh && (p.full || p.ordered === true || p.index === 0)))) throw bad('refresh is a boolean, for later parts of an incremental batch that are not ordered')
  let history: BatchPart['history']
  if (p.history !== undefined && p.history !== null) {
    const h = p.history as Record<string, unknown>
    if (!p.final || typeof h !== 'object' || !isSeq(h.from) || !isHistory(h.entries)) throw bad('history must be { from, entries } on a final part')
    history = { from: h.from, entries: h.entries }
  }
  let rejoin: BatchPart['rejoin']
  if (p.rejoin !== undefined && p.rejoin !== null) {
    const r = p.rejoin as Record<string, unknown>
    if (p.full || p.index !== 0 || typeof r !== 'object' || !isSeq(r.fork) || r.fork !== p.from) throw bad('rejoin must be { fork } on the first part of an incremental batch from the fork')
    rejoin = { fork: r.fork }
  }
  let range: BatchPart['range']
  if (p.range !== undefined && p.range !== null) {
    if (!p.full) throw bad('only a full batch has ranges')
    const r = p.range as Record<string, unknown>
    if (typeof r !== 'object' || (r.after !== null && !isBytes(r.after)) || (r.upto !== null && !isBytes(r.upto))) throw bad('range bounds must be bytes or null')
    range = { after: r.after === null ? null : asBuffer(r.after as Uint8Array), upto: r.upto === null ? null : asBuffer(r.upto as Uint8Array) }
    if (range.after !== null && range.upto !== null && Buffer.compare(range.after, range.upto) >= 0) throw bad('range is empty or reversed')
  }
  const ops: ReplicaOp[] = new Array(p.ops.length)
  for (let i = 0; i < p.ops.length; i++) {
    const op = p.ops[i] as Record<string, unknown>
    if (typeof op !== 'object' || op === null || !isBytes(op.key)) throw bad(`op ${i} has no binary key`)
    if (isReserved(op.key)) throw new MirrorError(`Bad batch part: op ${i} writes into the reserved range`, codes.RESERVED_KEY)
    const key = asBuffer(op.key)
    if (range !== undefined && (op.type !== 'put' || (range.after !== null && Buffer.compare(key, range.after) <= 0) || (range.upto !== null && Buffer.compare(key, range.upto) > 0))) {
      throw bad(`op ${i} of a copy part is not a put inside its range`)
    }
    if (op.type === 'put') {
      if (!isBytes(op.value)) throw bad(`op ${i} is a put without a binary value`)
      if (op.more !== undefined && op.more !== null && typeof op.more !== 'boolean') throw bad(`op ${i} has a non-boolean 'more'`)
      ops[i] = op.more === true ? { type: 'put', key, value: asBuffer(op.value), more: true } : { type: 'put', key, value: asBuffer(op.value) }
    } else if (op.type === 'del') {
      ops[i] = { type: 'del', key }
    } else {
      throw bad(`op ${i} has type ${String(op.type)}`)
    }
  }
  const part: BatchPart = { generation: p.generation, from: p.from, to: p.to, index: p.index, final: p.final, full: p.full, range, ops }
  if (p.overwrite === true) part.overwrite = true
  if (history !== undefined) part.history = history
  if (rejoin !== undefined) part.rejoin = rejoin
  if (p.repair === true) part.repair = true
  if (p.ordered === true) part.ordered = true
  if (p.refresh === true) part.refresh = true
  return part
}

/** How a staged part is stored in the replica's journal: `[key]` a del, `[key, value]` a put, `[key, value, 1]` a piece with more to come. */
export function encodeStagedPart (part: { range?: BatchPart['range'] | null, ops: ReplicaOp[] }): Buffer {
  return packr.pack({
    range: part.range ?? null,
    ops: part.ops.map((op) => op.type === 'del' ? [op.key] : op.more === true ? [op.key, op.value, 1] : [op.key, op.value])
  })
}

export function decodeStagedPart (value: Uint8Array): { range: BatchPart['range'] | null, ops: ReplicaOp[] } {
  const { range, ops } = unpackState<{ range: BatchPart['range'] | null, ops: Buffer[][] }>(value, 'journal part')
  if (!Array.isArray(ops)) throw new MirrorError('A journal part is malformed', codes.CORRUPT)
  return {
    range,
    ops: ops.map((o) => o.length === 1 ? { type: 'del', key: o[0] } : o.length === 3 ? { type: 'put', key: o[0], value: o[1], more: true } : { type: 'put', key: o[0], value: o[1] })
  }
}

/** The bytes of keys and values of some ops: what a part costs to hold. */
export function opsBytes (ops: ReplicaOp[]): number {
  let n = 0
  for (const op of ops) n += op.key.length + (op.type === 'put' ? op.value.length : 0)
  return n
}

export function packState (value: unknown): Buffer {
  return packr.pack(value)
}

export function unpackState<T> (value: Uint8Array, what: string): T {
  try {
    return packr.unpack(value) as T
  } catch (err) {
    throw new MirrorError(`The stored ${what} cannot be decoded`, codes.CORRUPT, { cause: err })
  }
}
