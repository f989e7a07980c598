import type { AbstractSnapshot } from 'abstract-level'
import type { BatchPart, ReplicaOp } from '../adapter'
import { MirrorError, codes } from '../errors'
import { BUFFERS, type InnerDb } from '../inner'
import { readRecordChunks } from '../log/records'
import { userRanges } from '../user-ranges'
import { valuePages } from '../value-pages'

/** A consistent view of the primary: its inner db at one explicit snapshot. */
export interface SnapshotSource {
  db: InnerDb
  snapshot: AbstractSnapshot
}

export interface PartLimits {
  maxOps: number
  maxBytes: number
}

export type Plan =
  | { kind: 'incremental', from: number, to: number, rejoin?: { fork: number, keys: Buffer[] }, resume?: { index: number, after: Buffer | null, seq: number }, steps?: number[], keys?: Buffer[] }
  | { kind: 'full', to: number, resume: { index: number, after: Buffer | null, seq: number } | null, overwrite?: boolean }

/**
 * Whether the log in `source` can take a replica at `watermark` to `to` incrementally: the records
 * ending after the watermark must start at or before it, and none may say "any key".
 */
export async function logCovers (source: SnapshotSource, watermark: number, to: number): Promise<boolean> {
  if (to <= watermark) return true
  let first = true
  for await (const chunk of readRecordChunks(source, watermark, to)) {
    for (const record of chunk) {
      if (first && record.from > watermark) return false
      first = false
      if (record.keys === null) return false
    }
  }
  return !first
}

/**
 * Where a catch-up from `from` to `to` can stop on the way: seqs `m` such that no key changed in
 * `(from, m]` changes again in `(m, to]`. The snapshot's value of every key changed before such an
 * `m` is then its value at `m`, so `(from, m]` is a real state of the primary read from the same
 * snapshot, and a long backlog goes out as a chain of small batches (each applied atomically in one
 * step on the replica) instead of one huge journaled one. Cuts are made once a step names about
 * `stepKeys` keys. Returns the ends of the steps, the last being `to`.
 *
 * Memory stays within the key-set bounds whatever the backlog: the cuts are found in rounds, each
 * over the keys of as many records as fit the bounds, and the next round starts at the last cut.
 * Only a window in which no cut exists at all (a key changed at its start changes again past its
 * end) ends the plan with one step to `to`.
 */
export async function planSteps (source: SnapshotSource, from: number, to: number, stepKeys: number, bounds: KeySetBounds = KEY_SET_BOUNDS): Promise<number[]> {
  return await plan(source, from, to, stepKeys, bounds, false) as number[]
}

/**
 * `planSteps`, or null where `logCovers` would say no: the first round reads every record of the
 * backlog anyway, so it checks them on the way instead of a pass of their own (a long backlog's
 * records are many, and each pass over them took a quarter of its catch-up).
 */
export async function planCatchUp (source: SnapshotSource, from: number, to: number, stepKeys: number, bounds: KeySetBounds = KEY_SET_BOUNDS): Promise<{ steps: number[], keys?: Buffer[] } | null> {
  const round: Round = { keys: undefined }
  const steps = await plan(source, from, to, stepKeys, bounds, true, round)
  return steps === null ? null : steps.length === 1 && round.keys !== undefined ? { steps, keys: round.keys } : { steps }
}

// What the first round of planning learnt beyond its cuts: the keys of the whole backlog, when it
// held them all (then a one-step catch-up need not read the records again to find them).
interface Round { keys: Buffer[] | undefined }

async function plan (source: SnapshotSource, from: number, to: number, stepKeys: number, bounds: KeySetBounds, check: boolean, round?: Round): Promise<number[] | null> {
  const steps: number[] = []
  let start = from
  while (start < to) {
    const cuts = await planRound(source, start, to, stepKeys, bounds, check && start === from, start === from ? round : undefined)
    if (cuts === null) return null
    if (cuts.length === 0) break
    steps.push(...cuts)
    start = cuts[cuts.length - 1]
  }
  if (steps.length === 0 || steps[steps.length - 1] < to) steps.push(to)
  return steps
}

/** Bounds on the distinct keys a catch-up holds at once (`planSteps`, `changedOps`). */
export interface KeySetBounds {
  maxKeys: number
  maxBytes: number
  /** Records of a planning window kept in memory (default 2 000 000); past it they are read twice. */
  maxRecords?: number
}

// The cuts in `(start, to]` that the keys of a window of records prove: the records from `start`
// whose keys fit the bounds. Their last change anywhere up to `to` is known, so a cut inside the
// window is checked against the whole backlog. Ends with `to` when the window reaches it. With
// `covers`, null if the records of `(start, to]` cannot take a replica from `start` (logCovers).
async function planRound (source: SnapshotSource, start: number, to: number, stepKeys: number, bounds: KeySetBounds, covers: boolean, round?: Round): Promise<number[] | null> {
  // Pass 1: the window, and the first and the last record up to `to` that name each of its keys;
  // the window's records (their seqs and numbers of keys) are kept, up to a bound, for pass 2.
  const last = new Map<string, number>()
  const first = new Map<string, number>()
  const maxRecords = bounds.maxRecords ?? MAX_PLANNED_RECORDS
  let tos: number[] | null = []
  let counts: number[] = []
  let bytes = 0
  let windowEnd = to
  let full = false
  let previous = start
  for await (const chunk of readRecordChunks(source, start, to)) {
    for (const record of chunk) {
      if (covers && ((previous === start && record.from > start) || record.keys === null)) return null
      for (const key of record.keys ?? []) {
        const id = key.toString('latin1')
        if (last.has(id)) {
          last.set(id, record.to)
        } else if (!full) {
          if (last.size >= bounds.maxKeys || bytes + key.length + 64 > bounds.maxBytes) {
            // This record does not fit: the window ends before it; from here on only the window's keys count.
            full = true
            windowEnd = previous
          } else {
            bytes += key.length + 64
            last.set(id, record.to)
            first.set(id, record.to)
          }
        }
      }
      if (!full && tos !== null) {
        if (tos.length < maxRecords) {
          tos.push(record.to)
          counts.push(record.keys?.length ?? 0)
        } else {
          tos = null
          counts = []
        }
      }
      previous = record.to
    }
  }
  if (covers && previous === start) return null
  if (round !== undefined && !full) round.keys = [...last.keys()].map((id) => Buffer.from(id, 'latin1'))
  // Pass 2: cut where every key seen so far has had its last change.
  const cuts: number[] = []
  let reach = 0
  let keys = 0
  let lastValid = start
  const consider = (at: number, named: number): void => {
    keys += named
    if (at < reach) return
    lastValid = at
    if (at === windowEnd || (keys >= stepKeys && at < to)) {
      cuts.push(at)
      keys = 0
    }
  }
  if (tos !== null) {
    // From memory: the keys a record and those before it name are the keys first named by then.
    const byFirst = [...first].sort((a, b) => a[1] - b[1])
    let next = 0
    for (let i = 0; i < tos.length; i++) {
      for (; next < byFirst.length && byFirst[next][1] <= tos[i]; next++) {
        const at = last.get(byFirst[next][0])!
        if (at > reach) reach = at
      }
      consider(tos[i], counts[i])
    }
  } else {
    // Too many records to keep: read the window's again.
    for await (const chunk of readRecordChunks(source, start, windowEnd)) {
      for (const record of chunk) {
        for (const key of record.keys ?? []) {
          const at = last.get(key.toString('latin1'))!
          if (at > reach) reach = at
        }
        consider(record.to, record.keys?.length ?? 0)
      }
    }
  }
  // The window ended short of a step's worth of keys past its last cut: cut at the last place
  // that allows it rather than give up on the rest of the backlog.
  if (lastValid > (cuts.length > 0 ? cuts[cuts.length - 1] : start)) cuts.push(lastValid)
  return cuts
}

// Records of a planning window kept in memory for its second pass (two numbers each, 32 MB at
// most); a window with more is read again instead.
const MAX_PLANNED_RECORDS = 2_000_000

/** What an op costs in a part: its key and value, and about what its encoding adds. */
function opCost (op: ReplicaOp): number {
  return op.key.length + (op.type === 'put' ? op.value.length : 0) + OP_OVERHEAD
}
const OP_OVERHEAD = 32
const NO_CHUNKS: readonly OpsChunk[] = Object.freeze([])

/**
 * A chunk of ops for one part; `pieces`: it holds nothing but further pieces of one value;
 * `ordered`: it goes on with one walk, in key order, of every key its source names.
 */
export interface OpsChunk {
  ops: ReplicaOp[]
  pieces: boolean
  ordered?: boolean
}

/**
 * Ops of one part, bounded in count and bytes: an op that would take a part past `maxBytes` starts
 * the next one, and a put larger than a whole part is cut into pieces, one part each (see
 * `ReplicaOp.more`), so no part is ever larger than the limit whatever the value sizes.
 */
export class PartBuffer {
  ops: ReplicaOp[] = []
  bytes = 0
  constructor (private limits: PartLimits) {}

  /**
   * Adds `op`; returns the chunks it completed, in order (most often none). An array, not a
   * generator: this runs once per op shipped, and a generator per op was a tenth of the primary's
   * allocations in live mirroring.
   */
  add (op: ReplicaOp): readonly OpsChunk[] {
    const cost = opCost(op)
    const before = this.ops.length > 0 && this.bytes + cost > this.limits.maxBytes ? this.take() : null
    if (op.type === 'put' && cost > this.limits.maxBytes) {
      const chunks = before === null ? [] : [before]
      const room = this.limits.maxBytes - op.key.length - OP_OVERHEAD
      if (room < 1) {
        throw new MirrorError(`A key of ${op.key.length} bytes cannot be shipped in parts of ${this.limits.maxBytes} bytes (maxBatchBytes, or the replica's frame limit)`, codes.TOO_LARGE)
      }
      for (let at = 0; at < op.value.length; at += room) {
        const more = at + room < op.value.length
        const piece: ReplicaOp = more
          ? { type: 'put', key: op.key, value: op.value.subarray(at, at + room), more: true }
          : { type: 'put', key: op.key, value: op.value.subarray(at) }
        chunks.push({ ops: [piece], pieces: at > 0 })
      }
      return chunks
    }
    this.ops.push(op)
    this.bytes += cost
    const full = this.ops.length >= this.limits.maxOps || this.bytes >= this.limits.maxBytes ? this.take() : null
    if (before === null) return full === null ? NO_CHUNKS : [full]
    return full === null ? [before] : [before, full]
  }

  take (): OpsChunk {
    const ops = this.ops
    this.ops = []
    this.bytes = 0
    return { ops, pieces: false }
  }
}

// The distinct keys of a batch are collected up to these bounds before values are read; past
// them (a huge backlog) the set is shipped and started afresh, so memory stays bounded.
const KEY_SET_BOUNDS: KeySetBounds = { maxKeys: 262_144, maxBytes: 16 * 1024 * 1024 }

/**
 * Ops for the keys changed in `(after, to]`: every key the log names there, once, with its value
 * in the snapshot (or a del); only those after `keys.after`, or up to `keys.upto`. A key set
 * larger than the bounds above is shipped in rounds; a key named in two rounds is shipped twice
 * with the same value, which is harmless. Chunks of a set shipped in one round are `ordered`.
 */
async function * changedOps (source: SnapshotSource, after: number, to: number, limits: PartLimits, also: Buffer[] = [], only: { after?: Buffer | null, upto?: Buffer } = {}, fromLog = true): AsyncGenerator<OpsChunk> {
  let keys = new Map<string, Buffer>()
  let keyBytes = 0
  let flushed = false
  const flush = async function * (last: boolean): AsyncGenerator<OpsChunk> {
    // One round for the whole set (the first flush is the last): one walk in key order.
    const ordered = last && !flushed
    flushed = true
    // In key order: the snapshot reads then walk the store forward.
    const list = [...keys.values()].sort(Buffer.compare)
    keys = new Map()
    keyBytes = 0
    // Values are read in pages of bounded bytes, and cut into parts within their limits.
    const part = new PartBuffer(limits)
    let at = 0
    for await (const values of valuePages(source.db, list, source.snapshot, limits.maxBytes)) {
      for (const value of values) {
        const key = list[at++]
        for (const chunk of part.add(value === undefined ? { type: 'del', key } : { type: 'put', key, value })) yield { ...chunk, ordered }
      }
    }
    if (part.ops.length > 0) yield { ...part.take(), ordered }
  }
  // Whether the set is full once `key` is in it. Not a generator: it runs for every key of every
  // record of a catch-up.
  const add = (key: Buffer): boolean => {
    if ((only.after !== undefined && only.after !== null && Buffer.compare(key, only.after) <= 0) || (only.upto !== undefined && Buffer.compare(key, only.upto) > 0)) return false
    const id = key.toString('latin1')
    if (keys.has(id)) return false
    keys.set(id, key)
    keyBytes += key.length + 64
    return keys.size >= KEY_SET_BOUNDS.maxKeys || keyBytes >= KEY_SET_BOUNDS.maxBytes
  }
  // Keys named elsewhere (a demoted primary's own changes after the fork) ship with the log's.
  for (const key of also) if (add(key)) yield * flush(false)
  if (fromLog) {
    for await (const chunk of readRecordChunks(source, after, to)) {
      for (const record of chunk) {
        for (const key of record.keys ?? []) if (add(key)) yield * flush(false)
      }
    }
  }
  if (keys.size > 0 || !flushed) yield * flush(true)
}

/** Every user entry of the snapshot after key `after`, in key order, a part's worth at a time. */
async function * copyOps (source: SnapshotSource, after: Buffer | null, limits: PartLimits): AsyncGenerator<OpsChunk> {
  const part = new PartBuffer(limits)
  for (const range of userRanges(after, null)) {
    const it = source.db.iterator({ ...range, ...BUFFERS, snapshot: source.snapshot })
    try {
      while (true) {
        const entries: Array<[Buffer, Buffer]> = await it.nextv(256)
        if (entries.length === 0) break
        for (const [key, value] of entries) for (const chunk of part.add({ type: 'put', key, value })) yield chunk
      }
    } finally {
      await it.close()
    }
  }
  if (part.ops.length > 0) yield part.take()
}

/**
 * The parts of one batch for `plan`, read from `source`, the last one marked final. Holds at most
 * two parts in memory (one of lookahead, to know which part is the last).
 */
export async function * buildParts (source: SnapshotSource, plan: Plan, generation: string, limits: PartLimits): AsyncGenerator<BatchPart> {
  let index = plan.kind === 'full' && plan.resume !== null ? plan.resume.index : plan.kind === 'incremental' && plan.resume !== undefined ? plan.resume.index : 0
  let held: BatchPart | null = null
  const emit = function * (part: Omit<BatchPart, 'index' | 'final' | 'generation'>): Generator<BatchPart> {
    if (held !== null) yield held
    held = { ...part, generation, index: index++, final: false }
    if (held.index === 0 && plan.kind === 'full' && plan.overwrite === true) held.overwrite = true
    if (held.index === 0 && plan.kind === 'incremental' && plan.rejoin !== undefined) held.rejoin = { fork: plan.rejoin.fork }
  }

  if (plan.kind === 'incremental') {
    const walk = (ordered: boolean | undefined): { ordered?: true } => ordered === true ? { ordered: true } : {}
    if (plan.resume === undefined) {
      // Keys the planning already collected (every key of a one-step catch-up), or the log's.
      const known = plan.keys !== undefined
      for await (const { ops, ordered } of changedOps(source, plan.from, plan.to, limits, known ? plan.keys : plan.rejoin?.keys, {}, !known)) {
        yield * emit({ from: plan.from, to: plan.to, full: false, ops, ...walk(ordered && plan.rejoin === undefined) })
      }
    } else {
      // A resumed batch: first the keys its staged parts hold (up to `after`) that changed since
      // they were read at `seq`, as they are now; then the walk goes on after `after` over every
      // key changed in `(from, to]`. Cut short in either, it resumes again.
      const { after, seq } = plan.resume
      if (after !== null && seq < plan.to) {
        for await (const { ops } of changedOps(source, seq, plan.to, limits, [], { upto: after })) {
          yield * emit({ from: plan.from, to: plan.to, full: false, ops, refresh: true })
        }
      }
      for await (const { ops, ordered } of changedOps(source, plan.from, plan.to, limits, [], { after })) {
        yield * emit({ from: plan.from, to: plan.to, full: false, ops, ...walk(ordered) })
      }
    }
    // A batch with nothing to change still moves the watermark (e.g. writes that were refused).
    if (held === null) yield * emit({ from: plan.from, to: plan.to, full: false, ops: [] })
  } else {
    let after = plan.resume?.after ?? null
    for await (const { ops, pieces } of copyOps(source, after, limits)) {
      // Further pieces of a value go between copy ranges: the range ended at the value's key.
      if (pieces) {
        yield * emit({ from: 0, to: plan.to, full: true, ops })
        continue
      }
      const upto = ops[ops.length - 1].key
      yield * emit({ from: 0, to: plan.to, full: true, range: { after, upto }, ops })
      after = upto
    }
    // The last copy part reaches the end of the keyspace (and deletes whatever the replica has there).
    const last = held as BatchPart | null
    if (last !== null && last.range !== undefined && last.range.upto === after) {
      last.range = { after: last.range.after, upto: null }
    } else {
      yield * emit({ from: 0, to: plan.to, full: true, range: { after, upto: null }, ops: [] })
    }
    if (plan.resume !== null && plan.resume.seq < plan.to) {
      // Parts staged before the resume were read at an older seq: ship what changed since.
      for await (const { ops } of changedOps(source, plan.resume.seq, plan.to, limits)) {
        yield * emit({ from: 0, to: plan.to, full: true, ops })
      }
    }
  }
  if (held !== null) yield { ...(held as BatchPart), final: true }
}

/**
 * The parts of an incremental batch whose ops are at hand (the net effect of consecutive seqs,
 * from the value tail, in key order): the same bounded parts as `buildParts`, the last one final.
 */
export function * tailParts (ops: ReplicaOp[], plan: Plan & { kind: 'incremental' }, generation: string, limits: PartLimits): Generator<BatchPart> {
  const buffer = new PartBuffer(limits)
  let index = 0
  let held: BatchPart | null = null
  const emit = function * (chunk: ReplicaOp[]): Generator<BatchPart> {
    if (held !== null) yield held
    // The tail's ops are every key of the batch once, in key order: one walk.
    held = { generation, from: plan.from, to: plan.to, index: index++, final: false, full: false, ordered: true, ops: chunk }
  }
  // Index loops: in a generator, for-of made an iterator and its results for every op.
  for (let i = 0; i < ops.length; i++) {
    const chunks = buffer.add(ops[i])
    for (let k = 0; k < chunks.length; k++) yield * emit(chunks[k].ops)
  }
  if (buffer.ops.length > 0 || held === null) yield * emit(buffer.take().ops)
  yield { ...(held as unknown as BatchPart), final: true }
}
