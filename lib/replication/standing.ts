import type { ReplicaHello } from '../adapter'
import { MirrorError, codes } from '../errors'
import { checksumAt, describeHistory, forkPoint, historyAt, type HistoryEntry } from '../history'

/** Where a replica stands against a primary, from its hello. */
export type Standing =
  /** At a position of the primary's history: it continues from its watermark. */
  | { kind: 'synced', watermark: number }
  /** It needs a full copy (never synced, or replaced by overwrite), and why if that is worth saying. */
  | { kind: 'copy', watermark: number, reason: string | null }
  /** A demoted primary of this line: it rejoins from the fork, with the keys its own log names. */
  | { kind: 'rejoin', fork: number, head: number, records: Array<[number, number, Buffer[]]> | null }

/**
 * Relates a replica's hello to this primary's history and head. A replica is written to only if
 * its position is one of ours (the same history behind its watermark, not past our head), it holds
 * nothing we did not send it, or `overwrite` says to replace it; otherwise this throws
 * `MIRROR_DIVERGED` or `MIRROR_REPLICA_NOT_EMPTY` and the replica is left as it is.
 */
export function standing (hello: ReplicaHello, history: HistoryEntry[], head: number, name: string, overwrite: boolean): Standing {
  if (hello.demoted !== undefined && hello.demoted !== null) {
    const d = hello.demoted
    const fork = forkPoint(history, head, d.history, d.head)
    if (fork >= 0) return { kind: 'rejoin', fork, head: d.head, records: d.records }
    // Not a primary of this line that came back: its data would be lost to a full copy.
    if (!overwrite) {
      throw new MirrorError(`replica '${name}' is a demoted primary of another line of history (${describeHistory(d.history)}), not this primary's: not writing to it (set overwrite to replace it)`, codes.REPLICA_NOT_EMPTY)
    }
    return { kind: 'copy', watermark: 0, reason: `replica '${name}' is a demoted primary of another line of history (${describeHistory(d.history)}); overwrite is set: it gets a full copy` }
  }
  if (hello.foreign !== undefined && hello.foreign !== null && !overwrite) {
    throw new MirrorError(hello.foreign === 'primary'
      ? `replica '${name}' is another primary's store, not a replica: not writing to it (demote it with \`mirror-level demote\` to rejoin it, or set the adapter's overwrite option to replace it)`
      : `replica '${name}' holds data that this primary did not send it: not writing to it (set the adapter's overwrite option to replace it)`, codes.REPLICA_NOT_EMPTY)
  }
  if (hello.generation === null) return { kind: 'copy', watermark: hello.watermark, reason: null }
  try {
    relate(hello, history, head, name)
  } catch (err) {
    // Told to overwrite: a replica of another line of history is replaced by a full copy.
    if (!overwrite) throw err
    return { kind: 'copy', watermark: 0, reason: `${(err as Error).message}; overwrite is set: it gets a full copy` }
  }
  return { kind: 'synced', watermark: hello.watermark }
}

// Throws MIRROR_DIVERGED unless the replica's position is a state of this primary's history.
function relate (hello: ReplicaHello, history: HistoryEntry[], head: number, name: string): void {
  if (hello.watermark > head) {
    throw new MirrorError(`replica '${name}' is at seq ${hello.watermark}, ahead of this primary (seq ${head}): it holds writes this primary does not have (split-brain, or this primary lost writes); not writing to it. ` +
      `This primary's history: ${describeHistory(history)}. To keep the replica's writes, restore a primary from it; to drop them, replace it (the adapter's overwrite option).`, codes.DIVERGED)
  }
  if (typeof hello.checksum === 'string') {
    if (checksumAt(history, hello.watermark) !== hello.checksum) {
      throw new MirrorError(`replica '${name}' holds another history at seq ${hello.watermark} (generation ${hello.generation}, checksum ${hello.checksum.slice(0, 8)}) than this primary ` +
        `(${describeHistory(historyAt(history, hello.watermark))}): one of them took writes the other does not have (split-brain, or a primary restored from an older copy of itself); not writing to it`, codes.DIVERGED)
    }
    return
  }
  // A replica written by a version that kept no history: its generation must be ours, not past its fork.
  const at = history.findIndex(([g]) => g === hello.generation)
  if (at === -1 || (at + 1 < history.length && hello.watermark > history[at + 1][1])) {
    throw new MirrorError(`replica '${name}' holds generation ${hello.generation} at seq ${hello.watermark}, which is not in this primary's history (${describeHistory(history)}): not writing to it`, codes.DIVERGED)
  }
}
