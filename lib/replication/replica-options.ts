import type { CommonReplicaOptions, ReplicaAdapter } from '../adapter'
import { MirrorError, codes, telling } from '../errors'
import { atLeast, knownOptions, nonNegativeInteger, positiveInteger } from '../options'

/** Where a replica stands, as `status()` reports it. */
export type ReplicaState =
  /** Not yet heard from (starting, or reconnecting after a failure). */
  | 'connecting'
  /** Up, and holding every committed write. */
  | 'idle'
  /** Up, shipping incremental batches. */
  | 'streaming'
  /** Up, shipping a full copy (a new replica, or one the log cannot catch up). */
  | 'syncing'
  /** Unreachable or failing; retried with backoff. */
  | 'down'
  /**
   * Reachable but not written to: it holds another line of history (`MIRROR_DIVERGED`), or data
   * this primary did not send it (`MIRROR_REPLICA_NOT_EMPTY`). Looked at again every `retryMaxDelay`.
   */
  | 'refused'
  /**
   * An error that retrying cannot cure (a wrong key, a protocol or version mismatch, a part the
   * replica rejects, a key too large to ship): see `errorCode`. Tried again every `retryMaxDelay`,
   * in case someone fixed the cause.
   */
  | 'failed'
  | 'closed'

export interface ResolvedReplicaOptions {
  name: string
  maxDelay: number
  maxBatchOps: number
  maxBatchBytes: number
  retryMinDelay: number
  retryMaxDelay: number
  overwrite: boolean
  verifyEvery: number
  verifyRepair: boolean
}

/** The option names every adapter takes (`CommonReplicaOptions`). */
export const COMMON_REPLICA_OPTIONS = ['name', 'maxDelay', 'maxBatchOps', 'maxBatchBytes', 'retryMinDelay', 'retryMaxDelay', 'overwrite', 'verifyEvery', 'verifyRepair'] as const

/**
 * Checks an adapter's options where they are given (its constructor): the common ones, and no name
 * that is neither common nor in `own`, so a typo is an error instead of a default.
 */
export function checkReplicaOptions (where: string, options: object, own: readonly string[]): void {
  knownOptions(where, options, [...COMMON_REPLICA_OPTIONS, ...own])
  resolveCommon(where, options as CommonReplicaOptions, (options as CommonReplicaOptions).name ?? 'unnamed')
}

export function resolveReplicaOptions (adapter: ReplicaAdapter, index: number): ResolvedReplicaOptions {
  const o: CommonReplicaOptions = adapter.options ?? {}
  return resolveCommon(`replica ${index}`, o, o.name ?? adapter.name ?? `replica-${index}`)
}

function resolveCommon (where: string, o: CommonReplicaOptions, name: unknown): ResolvedReplicaOptions {
  if (typeof name !== 'string' || name.length === 0) {
    throw new MirrorError(`${where}: option 'name' must be a non-empty string`, codes.INVALID_OPTION)
  }
  const retryMinDelay = positiveInteger(where, 'retryMinDelay', o.retryMinDelay, 100)
  // Unset, the longest delay is at least the first one: { retryMinDelay: 20000 } alone is valid.
  const retryMaxDelay = positiveInteger(where, 'retryMaxDelay', o.retryMaxDelay, Math.max(10_000, retryMinDelay))
  if (retryMaxDelay < retryMinDelay) {
    throw new MirrorError(`${where}: retryMaxDelay (${retryMaxDelay}) is below retryMinDelay (${retryMinDelay})`, codes.INVALID_OPTION)
  }
  for (const flag of ['overwrite', 'verifyRepair'] as const) {
    if (o[flag] !== undefined && typeof o[flag] !== 'boolean') throw new MirrorError(`${where}: option '${flag}' must be a boolean`, codes.INVALID_OPTION)
  }
  return {
    name,
    maxDelay: nonNegativeInteger(where, 'maxDelay', o.maxDelay, 50),
    maxBatchOps: positiveInteger(where, 'maxBatchOps', o.maxBatchOps, 1000),
    // A part must hold at least a key and a piece of its value.
    maxBatchBytes: atLeast(where, 'maxBatchBytes', positiveInteger(where, 'maxBatchBytes', o.maxBatchBytes, 4 * 1024 * 1024), 4096),
    retryMinDelay,
    retryMaxDelay,
    overwrite: o.overwrite === true,
    verifyEvery: nonNegativeInteger(where, 'verifyEvery', o.verifyEvery, 0),
    verifyRepair: o.verifyRepair === true
  }
}

// Errors that say the replica is on another line or holds what it should not: not written to.
export const REFUSALS: ReadonlySet<string> = new Set([codes.DIVERGED, codes.REPLICA_NOT_EMPTY])
// Errors no retry can cure: someone has to act (fix a key, upgrade, look at the replica).
export const CANNOT_CURE: ReadonlySet<string> = new Set([
  codes.AUTH, codes.PROTOCOL, codes.BAD_PART, codes.RESERVED_KEY, codes.CORRUPT, codes.TOO_LARGE,
  codes.INVALID_OPTION, codes.IS_REPLICA, codes.TLS, codes.FORBIDDEN, codes.WRONG_ROLE,
  // The replica's LevelDB cannot read its own files: a repairing verify or `mirror-level recover` salvages it.
  'LEVEL_CORRUPTION',
  // Its path is a file, not a directory, or may not be written: someone has to move or allow it.
  'EEXIST', 'ENOTDIR', 'EACCES', 'EPERM', 'EROFS'
])

/**
 * The code that decides what a replica's error means. LevelDB reports a directory it may not
 * write as an I/O error that says so only in its text (LEVEL_IO_ERROR, "Permission denied"): it
 * was retried as a blip.
 */
export function deciding (err: unknown): string {
  const code = telling(err) ?? ''
  if (code !== 'LEVEL_IO_ERROR') return code
  const e = err as { message?: unknown, cause?: { message?: unknown } }
  const text = `${String(e.message ?? '')} ${String(e.cause?.message ?? '')}`
  return /Permission denied/.test(text) ? 'EACCES' : /Read-only file system/.test(text) ? 'EROFS' : code
}

