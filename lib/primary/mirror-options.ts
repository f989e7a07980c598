import type { AbstractDatabaseOptions } from 'abstract-level'
import { MirrorError, codes } from '../errors'
import type { InnerDb } from '../inner'
import type { ReplicaAdapter } from '../adapter'
import { describe, nonNegativeInteger, positiveInteger } from '../options'
import { validateReplicas, type Mode, type OnReplicaDown } from '../replication/replication'
import { refuseSharedDirectories } from './directories'

// A budget must hold at least one merged record and some new ones; below this, compaction could
// never bring the log under it.
const MIN_LOG_BUDGET = 1024

const MIRROR_OPTIONS = ['logBudget', 'maxGroupOps', 'maxGroupBytes', 'replicas', 'mode', 'onReplicaDown', 'replicaTimeout', 'closeTimeout', 'truncateLog']

// abstract-level passes options it does not know on to open() and its hooks, so other names must
// pass; but one of ours in the wrong case ('logbudget') would leave the default in force without
// a word.
function refuseMisspelt (options: object): void {
  for (const name of Object.keys(options)) {
    const meant = MIRROR_OPTIONS.find((o) => o !== name && (o.toLowerCase() === name.toLowerCase() || o === `${name}s`))
    if (meant !== undefined) throw new MirrorError(`MirrorLevel: unknown option '${name}'; did you mean '${meant}'?`, codes.INVALID_OPTION)
  }
}

/** Options of {@link MirrorLevel}, besides abstract-level's `keyEncoding` and `valueEncoding`. */
export interface MirrorLevelOptions<K = string, V = string> extends AbstractDatabaseOptions<K, V> {
  /**
   * The byte budget of the on-disk log of changed keys. Past it, the oldest records are merged
   * (see README, "The log"). Default 64 MiB.
   */
  logBudget?: number
  /** A group commit takes queued writes up to this many operations. Default 10 000. */
  maxGroupOps?: number
  /** ... and up to this many bytes of keys and values. Default 16 MiB. */
  maxGroupBytes?: number
  /** The replicas to mirror to, one adapter each (e.g. `LevelReplica`, `TcpReplica`). Default none. */
  replicas?: ReplicaAdapter[]
  /**
   * When a write's promise resolves: `'async'` (default) after the local commit; `'memsync'` once
   * the replicas have received it too; `'fullsync'` once they have applied it.
   */
  mode?: Mode
  /**
   * In `memsync` and `fullsync` mode, what a write does while a replica is down (its last attempt
   * failed) or refused: `'degrade'` (default) resolves without it (status and the `replica-down`
   * event say so); `'block'` waits for it, up to `replicaTimeout`.
   */
  onReplicaDown?: OnReplicaDown
  /** With `onReplicaDown: 'block'`: how long a write waits before it rejects with `MIRROR_REPLICA_TIMEOUT` (the local write stays). Default 30 000 ms; 0 waits forever. */
  replicaTimeout?: number
  /**
   * How long `close()` may spend shipping what replicas still lack (a first copy included), in ms.
   * Past it, shipping stops; what was not applied stays in the log and ships after the next open.
   * Default 5000; 0 waits as long as it takes.
   */
  closeTimeout?: number
  /**
   * Whether the log's records go once every replica of this open has applied them (default true).
   * An open with only some of the store's usual replicas would let go of what the others still
   * lack; `false` keeps the records (within `logBudget`), so they catch up from the log and a
   * demoted primary can rejoin without a full copy. `mirror-level verify` opens with `false`.
   */
  truncateLog?: boolean
}

export interface ResolvedMirrorOptions {
  logBudget: number
  maxGroupOps: number
  maxGroupBytes: number
  adapters: ReplicaAdapter[]
  mode: Mode
  onReplicaDown: OnReplicaDown
  replicaTimeout: number
  closeTimeout: number
  truncateLog: boolean
  /** The options that are abstract-level's (encodings), for its constructor. */
  forward: AbstractDatabaseOptions<any, any>
}

/** Validates the arguments of `new MirrorLevel()`; throws `MIRROR_INVALID_OPTION` and changes nothing. */
export function resolveMirrorOptions (inner: unknown, options: MirrorLevelOptions<any, any>): ResolvedMirrorOptions {
  if (!isAbstractLevel(inner)) {
    throw new MirrorError(`MirrorLevel: the first argument must be an abstract-level database, got ${describe(inner)}`, codes.INVALID_OPTION)
  }
  if (typeof options !== 'object' || options === null) {
    throw new MirrorError(`MirrorLevel: options must be an object, got ${describe(options)}`, codes.INVALID_OPTION)
  }
  refuseMisspelt(options)
  const { logBudget, maxGroupOps, maxGroupBytes, replicas, mode, onReplicaDown, replicaTimeout, closeTimeout, truncateLog, ...forward } = options
  if (truncateLog !== undefined && typeof truncateLog !== 'boolean') {
    throw new MirrorError(`MirrorLevel: option 'truncateLog' must be a boolean, got ${describe(truncateLog)}`, codes.INVALID_OPTION)
  }
  const budget = positiveInteger('MirrorLevel', 'logBudget', logBudget, 64 * 1024 * 1024)
  if (budget < MIN_LOG_BUDGET) {
    throw new MirrorError(`MirrorLevel: option 'logBudget' must be at least ${MIN_LOG_BUDGET} bytes (a smaller log cannot hold one merged record), got ${budget}`, codes.INVALID_OPTION)
  }
  const groupOps = positiveInteger('MirrorLevel', 'maxGroupOps', maxGroupOps, 10_000)
  const groupBytes = positiveInteger('MirrorLevel', 'maxGroupBytes', maxGroupBytes, 16 * 1024 * 1024)
  const adapters = replicas ?? []
  if (!Array.isArray(adapters) || !adapters.every(isAdapter)) {
    throw new MirrorError('MirrorLevel: option \'replicas\' must be an array of replica adapters (hello, apply, close)', codes.INVALID_OPTION)
  }
  if (adapters.length > 0 && !inner.supports.explicitSnapshots) {
    throw new MirrorError('MirrorLevel: replication reads from snapshots, and this inner db has no explicit snapshots (classic-level, memory-level and level do)', codes.INVALID_OPTION)
  }
  if (mode !== undefined && !['async', 'memsync', 'fullsync'].includes(mode)) {
    throw new MirrorError(`MirrorLevel: option 'mode' must be 'async', 'memsync' or 'fullsync', got ${describe(mode)}`, codes.INVALID_OPTION)
  }
  if (onReplicaDown !== undefined && !['degrade', 'block'].includes(onReplicaDown)) {
    throw new MirrorError(`MirrorLevel: option 'onReplicaDown' must be 'degrade' or 'block', got ${describe(onReplicaDown)}`, codes.INVALID_OPTION)
  }
  validateReplicas(adapters)
  refuseSharedDirectories([
    { what: 'the primary', db: inner },
    ...adapters.map((a, i) => ({ what: `replica ${i} ('${a.options?.name ?? a.name}')`, db: a.db }))
  ])
  const timeout = nonNegativeInteger('MirrorLevel', 'replicaTimeout', replicaTimeout, 30_000)
  const closeWithin = nonNegativeInteger('MirrorLevel', 'closeTimeout', closeTimeout, 5000)
  return {
    logBudget: budget,
    maxGroupOps: groupOps,
    maxGroupBytes: groupBytes,
    adapters: [...adapters],
    mode: mode ?? 'async',
    onReplicaDown: onReplicaDown ?? 'degrade',
    replicaTimeout: timeout,
    closeTimeout: closeWithin,
    truncateLog: truncateLog ?? true,
    forward
  }
}

function isAbstractLevel (db: unknown): db is InnerDb {
  const d = db as InnerDb
  return typeof d === 'object' && d !== null && typeof d.batch === 'function' &&
    typeof d.iterator === 'function' && typeof d.open === 'function' && typeof d.supports === 'object'
}

function isAdapter (a: unknown): a is ReplicaAdapter {
  const x = a as ReplicaAdapter
  return typeof x === 'object' && x !== null && typeof x.hello === 'function' && typeof x.apply === 'function' && typeof x.close === 'function'
}

