/**
 * Every error mirror-level raises on purpose is a {@link MirrorError} with one of these codes,
 * in the style of abstract-level's `LEVEL_*` codes. Code on `err.code`, never on the message.
 */
export const codes = {
  /** An option passed to a constructor or method is missing, of the wrong type or out of range. */
  INVALID_OPTION: 'MIRROR_INVALID_OPTION',
  /** A write touched the reserved key range (see `RESERVED_RANGE`). Nothing was written. */
  RESERVED_KEY: 'MIRROR_RESERVED_KEY',
  /** Device I/O outside the device, or with a negative or non-integer offset or length. */
  OUT_OF_RANGE: 'MIRROR_OUT_OF_RANGE',
  /** A BlockDevice was reopened with a chunk size or size that does not match what is stored. */
  DEVICE_MISMATCH: 'MIRROR_DEVICE_MISMATCH',
  /** An operation needs an open database or device. */
  NOT_OPEN: 'MIRROR_NOT_OPEN',
  /** Internal state in the reserved range is not what this version of mirror-level wrote. */
  CORRUPT: 'MIRROR_CORRUPT',
  /** The inner database failed to commit a write; the write was not applied. */
  WRITE_FAILED: 'MIRROR_WRITE_FAILED',
  /** A batch would leave a gap on a replica (it starts past the replica's watermark). Not applied. */
  GAP: 'MIRROR_GAP',
  /** A batch part is malformed or out of order. Not applied. */
  BAD_PART: 'MIRROR_BAD_PART',
  /** A replica is in another line of history than the primary (split-brain). Not written to. */
  DIVERGED: 'MIRROR_DIVERGED',
  /** A write or `replicated()` waited longer than its timeout for replicas. The local write stays. */
  REPLICA_TIMEOUT: 'MIRROR_REPLICA_TIMEOUT',
  /** A replica failed under an operation on it (a verify): its db or its link; `cause` is its own error. */
  REPLICA_FAILED: 'MIRROR_REPLICA_FAILED',
  /** The database or replica was closed while an operation waited on it. */
  CLOSED: 'MIRROR_CLOSED',
  /** A network peer broke the protocol: a bad frame, checksum, version or message. */
  PROTOCOL: 'MIRROR_PROTOCOL',
  /** Mutual authentication with the pre-shared key failed. */
  AUTH: 'MIRROR_AUTH',
  /** The server refused: another primary streams to the resource, or too many connections. */
  BUSY: 'MIRROR_BUSY',
  /** A network peer did not answer in time. */
  TIMEOUT: 'MIRROR_TIMEOUT',
  /** The server could not be reached (connection refused, host not found, network unreachable, reset before the handshake), or the connection to it dropped. Retried with backoff. */
  UNREACHABLE: 'MIRROR_UNREACHABLE',
  /** The TLS handshake failed: the certificate is not trusted, the TLS versions do not match, or one side does not speak TLS. */
  TLS: 'MIRROR_TLS',
  /** A store holds a replica's state: it becomes a primary only through `recover` and promotion. */
  IS_REPLICA: 'MIRROR_IS_REPLICA',
  /** A replica holds data no primary of this line sent it; it is refused unless `overwrite` is set. */
  REPLICA_NOT_EMPTY: 'MIRROR_REPLICA_NOT_EMPTY',
  /** Something cannot be shipped at all (a key larger than a part may hold). */
  TOO_LARGE: 'MIRROR_TOO_LARGE',
  /** A write was made through a read-only view (a replica's reader). */
  READ_ONLY: 'MIRROR_READ_ONLY',
  /** An event listener threw. Reported (the `error` event, or a process warning); nothing stopped. */
  LISTENER: 'MIRROR_LISTENER',
  /** A store is not what the operation needs: promote needs a synced replica, demote a primary, restore an empty target. */
  WRONG_ROLE: 'MIRROR_WRONG_ROLE',
  /** The key may not do this: read or write this resource (the server's key file gives each key its rights). */
  FORBIDDEN: 'MIRROR_FORBIDDEN',
  /** What arrived does not match its source (a restore's checksum, a verify's fingerprints). */
  MISMATCH: 'MIRROR_MISMATCH'
} as const

export type MirrorErrorCode = (typeof codes)[keyof typeof codes]

/** The error class of mirror-level. `code` says what went wrong; `cause` holds an underlying error. */
export class MirrorError extends Error {
  readonly code: MirrorErrorCode

  constructor (message: string, code: MirrorErrorCode, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'MirrorError'
    this.code = code
  }
}

/** An error's message with the messages of its causes (a failed open says only "Database failed to open"). */
export function describeError (err: unknown): string {
  const e = err as Error & { code?: string, cause?: unknown }
  let message = e?.message ?? String(err)
  let cause = e?.cause as (Error & { code?: string, cause?: unknown }) | undefined
  for (let depth = 0; cause instanceof Error && depth < 5; depth++) {
    message += `: ${cause.message}${cause.code !== undefined ? ` (${cause.code})` : ''}`
    cause = cause.cause as typeof cause
  }
  return message
}

/** The code that says most: a wrapper's (LEVEL_DATABASE_NOT_OPEN) gives way to its cause's (LEVEL_LOCKED). */
export function telling (err: unknown): string | null {
  const e = err as { code?: string, cause?: { code?: string } } | null
  if (e === null || typeof e !== 'object') return null
  if (e.code === 'LEVEL_DATABASE_NOT_OPEN' && typeof e.cause?.code === 'string') return e.cause.code
  return e.code ?? null
}
