import type { BatchPart, ReplicaOp } from '../adapter'
import { MirrorError, codes } from '../errors'
import type { HistoryEntry } from '../history'
import type { JournalHeader, ReplicaState } from './state'

// How the parts of a batch must follow each other, and what the header says once they have: the
// rules the replica engine checks before it holds or stages anything.

export function bad (why: string): MirrorError {
  return new MirrorError(`Bad batch part: ${why}`, codes.BAD_PART)
}


export function firstHeader (part: BatchPart): JournalHeader {
  if (part.full && (part.range === undefined || part.range.after !== null)) throw bad('a full batch starts with a copy part from the first key')
  const walk = part.full || part.rejoin !== undefined ? false : walked(null, part)
  const upto = part.range !== undefined ? part.range.upto : walk === false ? null : walk
  return {
    generation: part.generation,
    from: part.from,
    to: part.to,
    full: part.full,
    parts: 1,
    committed: false,
    upto,
    copyDone: part.full && upto === null,
    piece: null,
    overwrite: part.overwrite === true,
    rejoin: part.rejoin?.fork ?? null,
    history: null,
    readAt: part.to,
    readAtGeneration: part.generation,
    applying: false,
    resumable: walk !== false,
    appliedParts: 0,
    inPlace: false
  }
}

// Where an ordered incremental part leaves the walk of its batch's keys that reached `upto`: its
// last key (`upto` itself when it has no ops), or false if it is not such a part. Keys may repeat
// only as the pieces of one value.
function walked (upto: Buffer | null, part: BatchPart): Buffer | null | false {
  if (part.ordered !== true) return false
  let last = upto
  for (const op of part.ops) {
    if (last !== null && Buffer.compare(op.key, last) < 0) return false
    last = op.key
  }
  return last
}

// The primary's history the replica keeps once this batch is applied: what it had (nothing, for a
// copy or a rejoin) with the entries the final part brings.
export function nextHistory (header: JournalHeader, state: ReplicaState, part: BatchPart): HistoryEntry[] | null {
  const fresh = header.full || header.rejoin !== null
  const base = fresh ? [] : state.history
  if (part.history === undefined) return fresh ? null : base
  if (base === null || part.history.from > base.length) {
    if (part.history.from !== 0) throw bad(`history from entry ${part.history.from}, but the replica keeps ${base?.length ?? 'no'} entries`)
    return part.history.entries
  }
  return [...base.slice(0, part.history.from), ...part.history.entries]
}

/**
 * Checks that pieces of large values follow each other (puts of the same key, every one but the
 * last marked `more`) and returns the key still being pieced together, or null. `onlyPieces`: the
 * part may hold nothing but the continuation of a value (a part between copy ranges).
 */
export function continuePieces (piece: Buffer | null, ops: ReplicaOp[], onlyPieces: boolean): Buffer | null {
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]
    if (piece !== null && (op.type !== 'put' || !op.key.equals(piece))) throw bad(`op ${i} does not continue the value of the key before it`)
    if (piece === null && onlyPieces) throw bad(`op ${i} of a part between copy ranges is not a piece of a value`)
    piece = op.type === 'put' && op.more === true ? op.key : null
  }
  return piece
}

/** The journal header after `part`, or an error if it does not follow the batch being received (`j`). */
export function followHeader (j: JournalHeader | null, part: BatchPart): JournalHeader {
  // A resumed copy or incremental batch reaches a later seq, which may be in a later generation of
  // the same line.
  const resumed = j !== null && part.to > j.to && (part.full || j.resumable)
  const sameLine = j !== null && (j.generation === part.generation || resumed)
  if (j === null || j.committed || j.parts !== part.index || j.full !== part.full || !sameLine) {
    throw bad(`part ${part.index} does not follow the staged batch (${j === null ? 'none' : `${j.parts} parts`})`)
  }
  if (!part.full && (j.from !== part.from || (j.to !== part.to && !resumed))) throw bad('a later part of an incremental batch must have its batch\'s from and to (or resume one that can be)')
  // A key before the walk's last one may be one the staged parts skipped: no resuming after this,
  // unless it is sent again as it is now (a refresh, before the walk goes on).
  const refresh = !part.full && j.resumable && part.refresh === true && part.ops.every((op) => j.upto !== null && Buffer.compare(op.key, j.upto) <= 0)
  const walk = refresh ? j.upto : !part.full && j.resumable && (j.upto === null || part.ops.length === 0 || Buffer.compare(part.ops[0].key, j.upto) >= 0) ? walked(j.upto, part) : false
  // The walk goes on after a refresh to `to`: what is staged is as it was at `to`.
  const moved = !part.full && !refresh && walk !== false && part.to > j.readAt
  const copyUpto = part.range !== undefined ? part.range.upto : null
  if (part.full) {
    if (part.range !== undefined) {
      const contiguous = !j.copyDone && j.upto !== null && part.range.after !== null && part.range.after.equals(j.upto)
      if (!contiguous) throw bad('copy parts must tile the keyspace in order')
    } else if (!j.copyDone && j.piece === null) {
      throw bad('a full batch lists changed keys only after its copy is complete')
    }
    if (part.to < j.to) throw bad('a resumed copy cannot go back in seq')
  }
  // A copy part read at an older seq than the rest, or a walk that goes on after a refresh.
  const readNow = (part.range !== undefined && part.to < j.readAt) || moved
  return {
    ...j,
    generation: part.generation,
    to: part.to,
    readAt: readNow ? part.to : j.readAt,
    readAtGeneration: readNow ? part.generation : j.readAtGeneration,
    parts: j.parts + 1,
    upto: part.range !== undefined ? copyUpto : walk !== false ? walk : j.upto,
    copyDone: j.copyDone || (part.range !== undefined && copyUpto === null),
    resumable: walk !== false
  }
}
