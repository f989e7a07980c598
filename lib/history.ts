import { createHash, randomBytes } from 'node:crypto'
import { Packr } from 'msgpackr'
import { MirrorError, codes } from './errors'

const packr = new Packr({ useRecords: false, mapsAsObjects: true })

/**
 * One entry of a store's history: a generation id and the seq after which it applies (its first
 * write is `first + 1`). A store gets its first entry when it is first wrapped, a new one on the
 * first write after every open, and one when it is promoted or restored. Within one entry the
 * history is one process's pipeline, so two stores that share an entry at a seq share every write
 * up to it; two stores whose pasts differ (a primary restored from an older copy of itself and
 * written to) differ in their entries.
 */
export type HistoryEntry = [id: string, first: number]

/** The entries that describe the history up to `seq`: the first one, and every one starting before `seq`. */
export function historyAt (history: HistoryEntry[], seq: number): HistoryEntry[] {
  let n = 1
  while (n < history.length && history[n][1] < seq) n++
  return history.slice(0, n)
}

/** The generation the state at `seq` belongs to. */
export function generationAt (history: HistoryEntry[], seq: number): string {
  const at = historyAt(history, seq)
  return at[at.length - 1][0]
}

/**
 * The checksum of the history behind `seq` (LiteFS's TXID/checksum, for a log of generations): two
 * positions with the same seq and checksum are the same state of the same line of history.
 */
export function checksumAt (history: HistoryEntry[], seq: number): string {
  return checksum(historyAt(history, seq))
}

export function checksum (entries: HistoryEntry[]): string {
  const hash = createHash('sha256')
  for (const [id, first] of entries) hash.update(`${id}@${first};`)
  return hash.digest('hex').slice(0, 32)
}

/**
 * The last seq at which two histories (each with its head) describe the same state: the fork.
 * -1 when they share nothing (their first entries differ: unrelated stores).
 */
export function forkPoint (a: HistoryEntry[], headA: number, b: HistoryEntry[], headB: number): number {
  if (a.length === 0 || b.length === 0 || !same(a[0], b[0])) return -1
  let i = 1
  while (i < a.length && i < b.length && same(a[i], b[i])) i++
  return Math.min(headA, headB, a[i]?.[1] ?? Infinity, b[i]?.[1] ?? Infinity)
}

function same (x: HistoryEntry, y: HistoryEntry): boolean {
  return x[0] === y[0] && x[1] === y[1]
}

/** A short, readable rendering for messages: `1a2b3c4d@0, 5e6f7a8b@120`. */
export function describeHistory (history: HistoryEntry[]): string {
  const shown = history.length > 6 ? [...history.slice(0, 2), null, ...history.slice(-3)] : history
  return shown.map((e) => e === null ? '...' : `${e[0].slice(0, 8)}@${e[1]}`).join(', ')
}

export function newGeneration (): string {
  return randomBytes(16).toString('hex')
}

export function encodeHistory (history: HistoryEntry[]): Buffer {
  return packr.pack(history)
}

export function isHistory (value: unknown): value is HistoryEntry[] {
  return Array.isArray(value) && value.length > 0 && value.every((h) => Array.isArray(h) && h.length === 2 &&
    typeof h[0] === 'string' && h[0].length > 0 && Number.isSafeInteger(h[1]) && h[1] >= 0)
}

export function decodeHistory (value: Uint8Array): HistoryEntry[] {
  let history: unknown
  try {
    history = packr.unpack(value)
  } catch (err) {
    throw new MirrorError('The stored generation history cannot be decoded', codes.CORRUPT, { cause: err })
  }
  if (!isHistory(history)) throw new MirrorError('The stored generation history is malformed', codes.CORRUPT)
  return history
}
