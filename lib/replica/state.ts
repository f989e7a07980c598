import { MirrorError, codes } from '../errors'
import { isHistory, type HistoryEntry } from '../history'
import { packState, unpackState } from './part-codec'

/** What a replica holds, stored under the meta key `replica` atomically with the data it covers. */
export interface ReplicaState {
  /** The primary generation of the state it holds, or null if it was never synced. */
  generation: string | null
  /** The seq of the primary state it holds. */
  watermark: number
  /** The primary's history behind the watermark (null: never synced, or kept by an older version). */
  history: HistoryEntry[] | null
  /** A demoted primary waiting to rejoin: its own history and head, and where its discarded writes were saved. */
  demoted: { history: HistoryEntry[], head: number, saved: string | null } | null
}

/** The header of a staged batch (the journal), stored under the meta key `journal`. */
export interface JournalHeader {
  generation: string
  from: number
  to: number
  full: boolean
  parts: number
  /** The final part is staged: the batch is applied (again, after a crash) until it is done. */
  committed: boolean
  /** For a full batch: the last key its copy parts cover so far (null: none, or all if done). */
  upto: Buffer | null
  copyDone: boolean
  /** The key of a value whose pieces are still arriving (see `ReplicaOp.more`), or null. */
  piece: Buffer | null
  /** The batch replaces what the replica held although no primary of this line sent it. */
  overwrite: boolean
  /** The batch takes a demoted primary onto this line from this fork seq (null: it does not). */
  rejoin: number | null
  /** The primary's history the replica holds once the batch is applied (set by the final part). */
  history: HistoryEntry[] | null
  /**
   * For a full copy: the oldest seq any of its staged copy parts was read at, and its generation.
   * A copy resumed more than once holds parts read at several seqs; what changed since the oldest
   * of them must still be shipped.
   */
  readAt: number
  readAtGeneration: string
  /** The apply of this committed batch has begun: the user data may be a mix of two states until it ends. */
  applying: boolean
  /**
   * An incremental batch whose parts so far were all one walk of its keys in key order (`upto` the
   * last key sent): if it is cut short, a primary may resume it after `upto` instead of starting over.
   */
  resumable: boolean
  /** Of a committed batch being applied: the parts applied so far (the apply goes on from there). */
  appliedParts: number
  /**
   * A first copy into a replica that held nothing: its parts are written straight into the user
   * keyspace (nothing to keep readable there), not staged; only this header is kept, to resume.
   */
  inPlace: boolean
}

const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isKeyOrNull = (v: unknown): boolean => v === null || v === undefined || v instanceof Uint8Array

export function encodeReplicaState (state: ReplicaState): Buffer {
  return packState(state)
}

export function decodeReplicaState (value: Uint8Array): ReplicaState {
  const s = unpackState<Record<string, unknown>>(value, 'replica state')
  if (typeof s !== 'object' || s === null || !(s.generation === null || (typeof s.generation === 'string' && s.generation.length > 0)) || !isSeq(s.watermark)) {
    throw new MirrorError('The stored replica state is malformed (it needs a generation and a numeric watermark)', codes.CORRUPT)
  }
  const history = s.history === undefined || s.history === null ? null : s.history
  if (history !== null && !isHistory(history)) throw new MirrorError('The stored replica state has a malformed history', codes.CORRUPT)
  const d = s.demoted as Record<string, unknown> | null | undefined
  if (d !== undefined && d !== null && (typeof d !== 'object' || !isHistory(d.history) || !isSeq(d.head) || !(d.saved === null || typeof d.saved === 'string'))) {
    throw new MirrorError('The stored replica state has a malformed demotion record', codes.CORRUPT)
  }
  return {
    generation: s.generation as string | null,
    watermark: s.watermark,
    history,
    demoted: d === undefined || d === null ? null : { history: d.history as HistoryEntry[], head: d.head as number, saved: d.saved as string | null }
  }
}

export const NEVER_SYNCED: ReplicaState = Object.freeze({ generation: null, watermark: 0, history: null, demoted: null }) as ReplicaState

export function encodeJournal (header: JournalHeader): Buffer {
  return packState(header)
}

export function decodeJournal (value: Uint8Array): JournalHeader {
  const j = unpackState<Record<string, unknown>>(value, 'replica journal')
  if (typeof j !== 'object' || j === null || typeof j.generation !== 'string' || !isSeq(j.from) || !isSeq(j.to) ||
      typeof j.full !== 'boolean' || !isSeq(j.parts) || typeof j.committed !== 'boolean' || !isKeyOrNull(j.upto) ||
      typeof j.copyDone !== 'boolean' || !isKeyOrNull(j.piece)) {
    throw new MirrorError('The stored replica journal is malformed', codes.CORRUPT)
  }
  const key = (v: unknown): Buffer | null => v === null || v === undefined ? null : Buffer.from(v as Uint8Array)
  return {
    generation: j.generation,
    from: j.from,
    to: j.to,
    full: j.full,
    parts: j.parts,
    committed: j.committed,
    upto: key(j.upto),
    copyDone: j.copyDone,
    piece: key(j.piece),
    overwrite: j.overwrite === true,
    rejoin: isSeq(j.rejoin) ? j.rejoin : null,
    history: isHistory(j.history) ? j.history : null,
    readAt: isSeq(j.readAt) ? j.readAt : j.to,
    readAtGeneration: typeof j.readAtGeneration === 'string' ? j.readAtGeneration : j.generation,
    applying: j.applying === true,
    resumable: j.resumable === true,
    appliedParts: isSeq(j.appliedParts) && j.appliedParts <= (j.parts as number) ? j.appliedParts : 0,
    inPlace: j.inPlace === true && j.full === true
  }
}
