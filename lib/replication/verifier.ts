import type { BatchPart, ReplicaAdapter, ReplicaOp } from '../adapter'
import { MirrorError, codes } from '../errors'
import { entryDigests, fingerprintRange, sameFingerprint, splitRange, type Fingerprint, type KeyRangeBounds } from '../fingerprint'
import { valuePages } from '../value-pages'
import { PartBuffer, type PartLimits, type SnapshotSource } from './batch-builder'

/** Options of `db.verify()`. */
export interface VerifyOptions {
  /** Set the keys that differ to the primary's values, in one atomic step on the replica. Default false. */
  repair?: boolean
  /** Called as the comparison goes. */
  onProgress?: (progress: VerifyProgress) => void
  /** How long to wait for a replica that is still connecting, in ms. Default 30 000. */
  timeout?: number
}

export interface VerifyProgress {
  replica: string
  phase: 'comparing' | 'repairing' | 'done'
  /** Ranges compared so far, and how many of them differed. */
  ranges: number
  differingRanges: number
  /** Keys found to differ so far. */
  differing: number
}

/** What `db.verify()` found. */
export interface VerifyReport {
  replica: string
  /** The seq both sides were compared at: the replica was brought to it and held there. */
  seq: number
  /** Entries and bytes of keys and values the primary holds. */
  entries: number
  bytes: number
  /** Ranges whose fingerprints were compared, and round trips to the replica. */
  ranges: number
  roundTrips: number
  /** Bytes exchanged with the replica: counted by the transport where it can, else estimated. */
  wire: { sent: number, received: number, measured: boolean }
  /** Keys the replica lacks, holds extra, or holds with another value. */
  differing: { missing: number, extra: number, changed: number }
  /** Up to 100 of the differing keys. */
  keys: Buffer[]
  /** Keys set to the primary's values (repair). */
  repaired: number
  /** The replica's LevelDB reported corruption and was salvaged (LevelDB's repair) before the comparison. */
  salvaged?: boolean
  ms: number
}

// A range splits into this many at each level; a range with at most LEAF entries on either side is compared key by key.
const BRANCHING = 16
const LEAF = 32
const MAX_RANGES_PER_REQUEST = 256
const DIGESTS_PAGE = 1000
const LEAVES_IN_FLIGHT = 16

interface Pending {
  range: KeyRangeBounds
  local: Fingerprint
  remote: Fingerprint
}

/**
 * Compares the replica behind `adapter`, held at the primary's state `seq` (`source`), with that
 * state by recursive range fingerprints: equal ranges end at once, differing ones split at
 * quantiles of the primary's keys until they are small, then their keys are compared. With
 * `repair`, the differing keys are set to the snapshot's values in one repair batch (held in
 * memory or journaled on the replica, applied atomically; the watermark does not move).
 */
export async function verifyReplica (source: SnapshotSource, seq: number, generation: string, adapter: ReplicaAdapter, name: string, limits: PartLimits, options: VerifyOptions): Promise<VerifyReport> {
  try {
    return await compare(source, seq, generation, adapter, name, limits, options)
  } catch (err) {
    if ((err as { code?: string }).code !== 'LEVEL_CORRUPTION') throw err
    // The replica's LevelDB cannot read its own files (damaged tables): salvage what it can, then
    // compare again, which finds what was lost.
    if (options.repair !== true || adapter.salvage === undefined) {
      throw new MirrorError(`replica '${name}': its LevelDB reports corruption (${(err as Error).message}); verify with repair: true salvages it (LevelDB's repair) and mends what was lost`, codes.CORRUPT, { cause: err })
    }
    await adapter.salvage()
    const report = await compare(source, seq, generation, adapter, name, limits, options)
    return { ...report, salvaged: true }
  }
}

async function compare (source: SnapshotSource, seq: number, generation: string, adapter: ReplicaAdapter, name: string, limits: PartLimits, options: VerifyOptions): Promise<VerifyReport> {
  const fingerprint = adapter.fingerprint?.bind(adapter)
  const digests = adapter.digests?.bind(adapter)
  if (fingerprint === undefined || digests === undefined) {
    throw new MirrorError(`replica '${name}': its adapter cannot be verified (it has no fingerprint and digests methods)`, codes.INVALID_OPTION)
  }
  const started = Date.now()
  const trafficBefore = adapter.traffic?.()
  const report: VerifyReport = {
    replica: name, seq, entries: 0, bytes: 0, ranges: 0, roundTrips: 0,
    wire: { sent: 0, received: 0, measured: trafficBefore !== undefined },
    differing: { missing: 0, extra: 0, changed: 0 }, keys: [], repaired: 0, ms: 0
  }
  let differingRanges = 0
  const progress = (phase: VerifyProgress['phase']): void => options.onProgress?.({ replica: name, phase, ranges: report.ranges, differingRanges, differing: diffCount(report) })
  const estimate = (sent: number, received: number): void => {
    report.wire.sent += sent
    report.wire.received += received
  }
  const remoteFingerprints = async (ranges: KeyRangeBounds[]): Promise<Fingerprint[]> => {
    const out: Fingerprint[] = []
    for (let at = 0; at < ranges.length; at += MAX_RANGES_PER_REQUEST) {
      const batch = ranges.slice(at, at + MAX_RANGES_PER_REQUEST)
      out.push(...await fingerprint(batch))
      report.roundTrips++
      estimate(batch.reduce((n, r) => n + (r.after?.length ?? 0) + (r.upto?.length ?? 0) + 12, 24), batch.length * 48 + 24)
    }
    report.ranges += ranges.length
    return out
  }

  const repair = options.repair === true ? new RepairShipper(source, adapter, seq, generation, limits) : null
  const differs = async (kind: keyof VerifyReport['differing'], key: Buffer): Promise<void> => {
    report.differing[kind]++
    if (report.keys.length < 100) report.keys.push(key)
    await repair?.add(kind === 'extra' ? { type: 'del', key } : key)
  }

  const root: KeyRangeBounds = { after: null, upto: null }
  // Both sides scan at once: the replica's work (another process, or LevelDB's threads) overlaps ours.
  const [local, [remote]] = await allDone([fingerprintRange(source.db, null, null, source.snapshot), remoteFingerprints([root])] as const)
  report.entries = local.count
  report.bytes = local.bytes
  let level: Pending[] = sameFingerprint(local, remote) ? [] : [{ range: root, local, remote }]
  differingRanges += level.length
  progress('comparing')
  while (level.length > 0) {
    const next: Pending[] = []
    const leaves = level.filter((p) => p.local.count <= LEAF || p.remote.count <= LEAF)
    // Leaves are compared LEAVES_IN_FLIGHT at a time: their round trips overlap, and overlap the
    // splitting of the other ranges below.
    const comparing = (async () => {
      for (let at = 0; at < leaves.length; at += LEAVES_IN_FLIGHT) {
        const found = await Promise.all(leaves.slice(at, at + LEAVES_IN_FLIGHT).map((p) => compareKeys(source, p.range, digests, estimate, () => { report.roundTrips++ })))
        for (const [kind, key] of found.flat()) await differs(kind, key)
      }
    })()
    // Splits go to the replica a request at a time as they are made, so that it fingerprints one
    // request's ranges while we split the next ones.
    const asked: Array<Promise<void>> = []
    let split: Array<{ range: KeyRangeBounds, fingerprint: Fingerprint }> = []
    const ask = (): void => {
      const these = split
      split = []
      asked.push(remoteFingerprints(these.map((s) => s.range)).then((theirs) => {
        these.forEach((s, i) => {
          if (!sameFingerprint(s.fingerprint, theirs[i])) next.push({ range: s.range, local: s.fingerprint, remote: theirs[i] })
        })
      }))
    }
    try {
      for (const p of level) {
        if (leaves.includes(p)) continue
        split.push(...await splitRange(source.db, p.range, p.local.count, BRANCHING, source.snapshot))
        if (split.length + BRANCHING > MAX_RANGES_PER_REQUEST) ask()
      }
      if (split.length > 0) ask()
    } finally {
      await allDone([comparing, ...asked])
    }
    // Replies come back in any order; keep the ranges in key order, as a sequential walk has them.
    next.sort((a, b) => a.range.after === null ? -1 : b.range.after === null ? 1 : Buffer.compare(a.range.after, b.range.after))
    differingRanges += next.length
    progress('comparing')
    level = next
  }
  if (repair !== null) {
    progress('repairing')
    report.repaired = await repair.finish()
  }
  const trafficAfter = adapter.traffic?.()
  if (trafficBefore !== undefined && trafficAfter !== undefined) {
    report.wire = { sent: trafficAfter.sent - trafficBefore.sent, received: trafficAfter.received - trafficBefore.received, measured: true }
  }
  report.ms = Date.now() - started
  progress('done')
  return report
}

// Promise.all that waits for every promise before it rejects: nothing is left running against the
// snapshot the caller releases when this rejects.
async function allDone<T extends readonly unknown[]> (work: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const settled = await Promise.allSettled(work)
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed !== undefined) throw failed.reason
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: Awaited<T[K]> }
}

function diffCount (report: VerifyReport): number {
  return report.differing.missing + report.differing.extra + report.differing.changed
}

type Difference = ['missing' | 'extra' | 'changed', Buffer]

// The last step: the keys of one small range on both sides, by digest.
async function compareKeys (
  source: SnapshotSource,
  range: KeyRangeBounds,
  digests: NonNullable<ReplicaAdapter['digests']>,
  estimate: (sent: number, received: number) => void,
  roundTrip: () => void
): Promise<Difference[]> {
  const found: Difference[] = []
  const mine = new Map<string, [Buffer, Buffer]>()
  let from: Buffer | null = null
  while (true) {
    const page = await entryDigests(source.db, range, from, DIGESTS_PAGE, source.snapshot)
    for (const [key, digest] of page.entries) mine.set(key.toString('latin1'), [key, digest])
    if (!page.more) break
    from = page.entries[page.entries.length - 1][0]
  }
  from = null
  while (true) {
    const page = await digests(range, from, DIGESTS_PAGE)
    roundTrip()
    estimate((range.after?.length ?? 0) + (range.upto?.length ?? 0) + (from?.length ?? 0) + 32, page.entries.reduce((n, [k]) => n + k.length + 22, 16))
    for (const [key, digest] of page.entries) {
      const id = key.toString('latin1')
      const own = mine.get(id)
      if (own === undefined) found.push(['extra', key])
      else if (!own[1].equals(digest)) found.push(['changed', key])
      mine.delete(id)
    }
    if (!page.more || page.entries.length === 0) break
    from = page.entries[page.entries.length - 1][0]
  }
  for (const [key] of mine.values()) found.push(['missing', key])
  return found
}

/**
 * Ships the repair as it is found: the primary's values of the differing keys, in bounded parts
 * of one repair batch at the replica's own seq; the replica applies it atomically with the last.
 */
class RepairShipper {
  #source: SnapshotSource
  #adapter: ReplicaAdapter
  #seq: number
  #generation: string
  #part: PartBuffer
  #keys: Buffer[] = []
  #held: BatchPart | null = null
  #index = 0
  #count = 0

  constructor (source: SnapshotSource, adapter: ReplicaAdapter, seq: number, generation: string, limits: PartLimits) {
    this.#source = source
    this.#adapter = adapter
    this.#seq = seq
    this.#generation = generation
    this.#part = new PartBuffer(limits)
  }

  /** A key to set to the snapshot's value (or a del of a key the primary does not hold). */
  async add (what: Buffer | ReplicaOp): Promise<void> {
    this.#count++
    if (!Buffer.isBuffer(what)) return await this.#push([what])
    this.#keys.push(what)
    if (this.#keys.length >= 256) await this.#flushKeys()
  }

  async #flushKeys (): Promise<void> {
    if (this.#keys.length === 0) return
    const keys = this.#keys
    this.#keys = []
    let at = 0
    for await (const values of valuePages(this.#source.db, keys, this.#source.snapshot)) {
      await this.#push(values.map((value) => {
        const key = keys[at++]
        return value === undefined ? { type: 'del' as const, key } : { type: 'put' as const, key, value }
      }))
    }
  }

  async #push (ops: ReplicaOp[]): Promise<void> {
    for (const op of ops) for (const chunk of this.#part.add(op)) await this.#emit(chunk.ops)
  }

  // One part of lookahead, so the last one can be marked final.
  async #emit (ops: ReplicaOp[]): Promise<void> {
    if (this.#held !== null) await this.#adapter.apply(this.#held)
    this.#held = { generation: this.#generation, from: this.#seq, to: this.#seq, index: this.#index++, final: false, full: false, repair: true, ops }
  }

  /** Ships the last part; resolves with how many keys were set once the replica applied them all. */
  async finish (): Promise<number> {
    await this.#flushKeys()
    if (this.#part.ops.length > 0) await this.#emit(this.#part.take().ops)
    if (this.#held === null) return 0
    const ack = await this.#adapter.apply({ ...this.#held, final: true })
    if (ack.watermark !== this.#seq) throw new MirrorError(`the replica moved to seq ${ack.watermark} during a repair at ${this.#seq}`, codes.BAD_PART)
    return this.#count
  }
}
