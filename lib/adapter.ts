import type { Fingerprint, KeyRangeBounds } from './fingerprint'
import type { HistoryEntry } from './history'

/**
 * The replica transport interface. An adapter moves batches to one replica and reports what the
 * replica holds; it makes no decisions. When to ship, what to combine, what to retry and how long
 * to wait all live in the replicator (like Litestream's ReplicaClient, the interface is thin).
 *
 * At the far end, a {@link ReplicaEngine} does the applying: adapters for another process or
 * machine carry these calls to an engine there (see `TcpReplica`), in-process ones call it directly
 * (see `LevelReplica`).
 */

/**
 * One operation of a batch, with binary keys and values. A value larger than a part may hold is
 * shipped in pieces: puts of the same key, every piece but the last marked `more`, consecutive in
 * the batch (they may span parts); the replica writes the value once it has every piece.
 */
export type ReplicaOp =
  | { type: 'put', key: Buffer, value: Buffer, more?: boolean }
  | { type: 'del', key: Buffer }

/**
 * One part of a batch. A batch takes the replica from its watermark `from` to the primary's state
 * at seq `to` and is applied atomically once its final part has arrived. Small batches are one part.
 *
 * A full batch (`full: true`) is a complete copy: part `i` lists every user key of the primary in
 * the key range `(after, upto]` (null bounds are open ends), and applying it also deletes the
 * replica's keys in that range that it does not list. Parts of a full batch cover the keyspace in
 * order; a part without a range between them carries the further pieces of a value (see
 * {@link ReplicaOp}). A full batch may end with `incremental` parts: the keys changed between the
 * seq its earlier parts were read at and `to` (a resumed copy, see the README).
 */
export interface BatchPart {
  /** The primary's generation (its line of history) this batch belongs to. */
  generation: string
  /** The replica watermark this batch starts from (ignored for a full batch). */
  from: number
  /** The seq of the primary state this batch reaches. */
  to: number
  /** Position of this part in its batch, from 0. */
  index: number
  /** The last part: apply the batch now. */
  final: boolean
  /** A full copy rather than the keys changed since `from`. */
  full: boolean
  /** For a full batch's copy parts: the key range this part covers completely. */
  range?: { after: Buffer | null, upto: Buffer | null }
  /**
   * For an incremental batch: this part goes on with one walk, in key order, of the keys changed
   * in `(from, to]`, so that with it every one of them up to this part's last key has been sent
   * with its value at `to` or one it still had then. A journaled batch whose parts all say so (or
   * `refresh`) can resume after that key (see `PendingCopy.from`).
   */
  ordered?: boolean
  /**
   * For a resumed incremental batch, before its walk goes on: keys up to the walk's last key that
   * changed after the staged parts were read (`PendingCopy.to`), with their values at `to`. Once
   * they are all sent, the first `ordered` part that follows makes `to` the batch's read point.
   */
  refresh?: boolean
  /**
   * On the first part of a full batch: replace what the replica holds although it did not come
   * from this primary's line (the adapter's `overwrite` option). Without it such a replica refuses
   * the copy with `MIRROR_REPLICA_NOT_EMPTY`.
   */
  overwrite?: boolean
  /**
   * On the final part: the primary's history behind `to` from entry `from` on (the entries the
   * replica lacks), stored with the new watermark so the replica can be promoted, and so its
   * position carries a checksum of its history.
   */
  history?: { from: number, entries: HistoryEntry[] }
  /** On the first part of a batch that takes a demoted primary onto this line: the seq where the two histories forked. */
  rejoin?: { fork: number }
  /**
   * A repair (verify): its ops set keys to the primary's values at the replica's own watermark
   * (`from` = `to` = watermark), applied atomically; the watermark does not move.
   */
  repair?: boolean
  ops: ReplicaOp[]
}

/** A staged, not yet applied, full copy (or journaled incremental batch) that a primary may resume. */
export interface PendingCopy {
  /** The seq the staged parts were read at. */
  to: number
  generation: string
  /** How many parts are staged. */
  parts: number
  /** The last key the staged parts cover (null: none yet). */
  upto: Buffer | null
  /**
   * For an incremental batch (absent: a full copy): the watermark it starts from. Its staged parts
   * hold every key changed in `(from, to]` up to `upto`, with its value at `to` or later; those of
   * them changed after `to` (sent again), then every key changed in `(from, head]` after `upto`,
   * complete it.
   */
  from?: number
}

/** What a replica reports when a primary connects. */
export interface ReplicaHello {
  /** The primary generation of the state it holds, or null if it was never synced. */
  generation: string | null
  /** The seq of the primary state it holds (0 if never synced). */
  watermark: number
  /** A full copy staged but not applied, if any. */
  pending: PendingCopy | null
  /**
   * What the store holds that no primary sent it: `'data'`, user data in a store that was never
   * synced; `'primary'`, a primary's own store. Either refuses a full copy unless it is sent with
   * `overwrite` (absent or null: nothing).
   */
  foreign?: 'data' | 'primary' | null
  /** The largest part, in bytes of keys and values, the transport carries (e.g. a server's frame limit). */
  maxPartBytes?: number
  /**
   * The checksum of the primary's history behind `watermark` (see `checksumAt`): the position is
   * `(watermark, checksum)`. Null or absent: unknown (never synced, or written by a version that
   * kept no history).
   */
  checksum?: string | null
  /** A primary demoted to rejoin as a replica (`mirror-level demote`): see {@link DemotedHello}. */
  demoted?: DemotedHello | null
}

/** What a demoted primary tells the primary it rejoins: where its own line stood. */
export interface DemotedHello {
  /** Its own history and head when it was demoted. */
  history: HistoryEntry[]
  head: number
  /**
   * Its log: `[from, to, keys]`, the keys its writes `(from, to]` changed, oldest first; null when
   * they are too many to list here or a record says "any key" (the rejoin is then a full copy).
   */
  records: Array<[number, number, Buffer[]]> | null
}

/** The replica's answer to a part. */
export interface PartAck {
  /** The replica's watermark after this part (it moves only on a final part). */
  watermark: number
}

/** Options every adapter takes, read by the replicator. */
export interface CommonReplicaOptions {
  /** Name in status() and events. Default: the adapter's own (e.g. 'level-1'). */
  name?: string
  /**
   * Coalescing window in ms: after a write, wait this long for more writes before shipping, so
   * consecutive writes to the same keys are combined. 0 ships at once. Default 50. Writes waiting
   * in memsync or fullsync mode are shipped without waiting.
   */
  maxDelay?: number
  /** At most this many ops in one part. Default 1000. */
  maxBatchOps?: number
  /** About this many bytes of keys and values in one part. Default 4 MiB. */
  maxBatchBytes?: number
  /** First retry delay after a failure, in ms. Default 100. */
  retryMinDelay?: number
  /** Longest retry delay, in ms; delays double up to it, with jitter. Default 10000. */
  retryMaxDelay?: number
  /**
   * Let the first full copy replace what the replica holds although this primary did not send it:
   * user data in a store that was never a replica, or another primary's store. Default false: such
   * a replica is refused (`MIRROR_REPLICA_NOT_EMPTY`) and left as it is.
   */
  overwrite?: boolean
  /** Verify this replica every so many ms (see `db.verify()`), emitting `replica-verify`. Default 0: never. */
  verifyEvery?: number
  /** With `verifyEvery`: also repair what differs. Default false. */
  verifyRepair?: boolean
}

/** A replica transport. */
export interface ReplicaAdapter {
  /** A default name for status() and events. */
  readonly name: string
  /** The common options (validated by the replicator) plus the adapter's own. */
  readonly options: CommonReplicaOptions
  /** For a replica in this process: its db, so a primary can refuse one in its own directory (optional). */
  readonly db?: unknown
  /** Connects if needed and reports what the replica holds. Called again after any failure. */
  hello (): Promise<ReplicaHello>
  /**
   * Delivers one part. Resolves once it is staged (non-final parts) or applied together with the
   * rest of its batch (final part). `received` is called as soon as the replica holds the part in
   * memory (memsync), which may be before it resolves. Idempotent: a part whose batch the replica's
   * watermark already covers changes nothing and resolves with the watermark.
   */
  apply (part: BatchPart, received?: () => void): Promise<PartAck>
  /** Releases the transport. The replicator calls it once, when the primary closes. */
  close (): Promise<void>
  /**
   * For verification (optional; without it `verify()` refuses this replica): the fingerprint of
   * each range of the replica's user data, as it is now (the replicator ships nothing meanwhile).
   */
  fingerprint? (ranges: KeyRangeBounds[]): Promise<Fingerprint[]>
  /** For verification: the entries of a range with their digests, `limit` at a time after `from`. */
  digests? (range: KeyRangeBounds, from: Buffer | null, limit: number): Promise<{ entries: Array<[Buffer, Buffer]>, more: boolean }>
  /** For a repairing verify of a replica whose LevelDB reports corruption: LevelDB's repair of its directory (optional). */
  salvage? (): Promise<void>
  /** Bytes sent and received so far, if the transport counts them (for the verify report). */
  traffic? (): { sent: number, received: number }
}
