import { existsSync, readdirSync, statSync } from 'node:fs'
import { join, resolve, sep } from 'node:path'
import type { ConnectionOptions } from 'node:tls'
import { atLeast, describe, knownOptions, nonNegativeInteger, positiveInteger } from '../options'
import { MirrorError, codes } from '../errors'
import { addEntry, describeFingerprint, newFingerprint, sameFingerprint, type Fingerprint } from '../fingerprint'
import { describeHistory, encodeHistory, newGeneration, type HistoryEntry } from '../history'
import { BUFFERS, type InnerDb, type InnerOp } from '../inner'
import { metaKeys, reservedStart } from '../keyspace'
import { encodeHead } from '../log/head'
import { decodeOrigin, encodeOrigin, newOrigin } from '../origin'
import { packState, unpackState } from '../replica/part-codec'
import type { CursorPosition } from '../replica/cursor'
import { userRanges } from '../user-ranges'
import { openDirSource, openTcpSource, parseRemote, type RestoreSource, type SourcePosition } from './sources'

/** Options of {@link restore}. */
export interface RestoreOptions {
  /** A replica directory (closed, consistent), or `tcp://HOST:PORT/RESOURCE` (`tls://...` for TLS) of a `mirror-level serve`. */
  from: string
  /** The directory to restore into: new, empty, or an interrupted restore of the same source. */
  to: string
  /** For a remote source: the pre-shared key's text (the key needs the `read` right). */
  key?: string | Buffer
  /** For a remote source: `tls.connect` options (e.g. `{ ca }`), or true for the system's CAs. */
  tls?: boolean | ConnectionOptions
  /** Called as the restore goes (at most every `progressInterval` ms, and at each phase). */
  onProgress?: (progress: RestoreProgress) => void
  /** Default 500. */
  progressInterval?: number
  /** Bytes of entries read and written in one step. Default 4 MiB. */
  chunkBytes?: number
  /** Opens a directory. Default: classic-level. */
  openDb?: (path: string) => InnerDb | Promise<InnerDb>
}

export interface RestoreProgress {
  phase: 'copying' | 'verifying' | 'done'
  entries: number
  /** Bytes of keys and values copied so far. */
  bytes: number
  /** About how many bytes of keys and values the source holds in all (an estimate from LevelDB's file sizes), or null. */
  totalBytes: number | null
  /** Bytes per second since this run started. */
  rate: number
  /** Seconds left at that rate, or null. */
  eta: number | null
  /** This run continued an interrupted one. */
  resumed: boolean
}

export interface RestoreReport {
  /** The seq the restored primary continues from: the source's watermark. */
  seq: number
  /** Its history: the source's, and its own new generation. */
  history: HistoryEntry[]
  entries: number
  bytes: number
  resumed: boolean
  fingerprint: Fingerprint
  ms: number
  text: string
}

/** What a restore in progress stores in its target, with every step. */
interface RestoreState {
  source: { generation: string, watermark: number, checksum: string | null }
  /** Where the next step reads from: after this key. */
  next: { key: Buffer | null }
  entries: number
  bytes: number
  /** Of what was written so far: checked against the source's at the end. */
  fingerprint: Fingerprint
}

/**
 * Restores a primary's store from a replica (`mirror-level restore`): copies the replica's state
 * into `to`, a step at a time, each step recorded with its position, so a restore that is killed
 * continues where it stopped when run again; checks at the end that what arrived is what the
 * source holds (a fingerprint of every entry), and then makes `to` a primary in one atomic step:
 * its head at the source's watermark and a new generation after the source's history. The
 * replica it came from is then accepted as its replica, without a full copy.
 *
 * Until that last step `to` is no primary: `MirrorLevel` refuses it, so a half-restored store is
 * never used by mistake. A target that holds anything else is refused (`MIRROR_WRONG_ROLE`).
 */
export async function restore (options: RestoreOptions): Promise<RestoreReport> {
  const started = Date.now()
  checkOptions(options)
  const open = options.openDb ?? ((path: string) => classicLevel(path, true))
  const chunkBytes = options.chunkBytes ?? 4 * 1024 * 1024
  const remote = parseRemote(options.from)
  if (remote !== null && options.key === undefined) throw new MirrorError('restoring from a server needs its key (key, or --key-file)', codes.INVALID_OPTION)
  checkTarget(options.to, remote === null ? options.from : null)
  const source = remote !== null
    ? await openTcpSource(remote, { key: options.key!, tls: options.tls ?? (remote.tls ? true : undefined) })
    : await openDirSource(options.from, options.openDb ?? ((path: string) => classicLevel(path, false)))
  let target: InnerDb
  try {
    target = await open(options.to)
  } catch (err) {
    await source.close()
    throw err
  }
  try {
    const state = await prepareTarget(target, source.position, options.to)
    const resumed = state.next.key !== null
    const progress = new Progress(options, source.approximateBytes, resumed, state)
    await copy(source, target, state, chunkBytes, progress)
    progress.phase('verifying')
    const theirs = await source.fingerprint()
    if (!sameFingerprint(theirs, state.fingerprint)) {
      // Start over next time: what is here is not what the source holds.
      await target.del(metaKeys.restore, BUFFERS)
      throw new MirrorError(`What arrived (${describeFingerprint(state.fingerprint)}) is not what ${source.name} holds (${describeFingerprint(theirs)}); run the restore again`, codes.MISMATCH)
    }
    const history = await finish(target, source.position)
    progress.phase('done')
    return {
      seq: source.position.watermark,
      history,
      entries: state.entries,
      bytes: state.bytes,
      resumed,
      fingerprint: state.fingerprint,
      ms: Date.now() - started,
      text: `restored ${state.entries} entries (${state.bytes} bytes) from ${source.name} into ${options.to}, verified; ` +
        `it opens as a primary at seq ${source.position.watermark} (history ${describeHistory(history)})`
    }
  } finally {
    await source.close()
    await target.close()
  }
}

function checkOptions (options: RestoreOptions): void {
  if (typeof options !== 'object' || options === null) throw new MirrorError(`restore(): options must be an object, got ${describe(options)}`, codes.INVALID_OPTION)
  knownOptions('restore()', options, ['from', 'to', 'key', 'tls', 'onProgress', 'progressInterval', 'chunkBytes', 'openDb'])
  for (const name of ['from', 'to'] as const) {
    if (typeof options[name] !== 'string' || options[name].length === 0) throw new MirrorError(`restore(): option '${name}' must be a path or URL, got ${describe(options[name])}`, codes.INVALID_OPTION)
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw new MirrorError('restore(): option \'onProgress\' must be a function', codes.INVALID_OPTION)
  if (options.openDb !== undefined && typeof options.openDb !== 'function') throw new MirrorError('restore(): option \'openDb\' must be a function', codes.INVALID_OPTION)
  nonNegativeInteger('restore()', 'progressInterval', options.progressInterval, 500)
  if (options.chunkBytes !== undefined) atLeast('restore()', 'chunkBytes', positiveInteger('restore()', 'chunkBytes', options.chunkBytes), 4096)
}

// A target must be new or hold a LevelDB store (checked empty once open), and not be the source.
function checkTarget (to: string, fromDir: string | null): void {
  if (existsSync(to)) {
    if (!statSync(to).isDirectory()) throw new MirrorError(`${to} exists and is not a directory`, codes.WRONG_ROLE)
    if (!existsSync(join(to, 'CURRENT')) && readdirSync(to).length > 0) {
      throw new MirrorError(`${to} holds files that are no LevelDB store: a restore writes only into a new or empty directory`, codes.WRONG_ROLE)
    }
  }
  if (fromDir !== null) {
    const a = resolve(to)
    const b = resolve(fromDir)
    if (a === b || a.startsWith(b + sep) || b.startsWith(a + sep)) throw new MirrorError(`${to} is ${a === b ? 'the source itself' : 'inside the source, or the source inside it'}: restore into another directory`, codes.WRONG_ROLE)
  }
}

// The target's restore state: a fresh one for an empty store, the stored one to continue an
// interrupted restore of the same source. Anything else is refused.
async function prepareTarget (target: InnerDb, position: SourcePosition, where: string): Promise<RestoreState> {
  await target.open()
  const raw = await target.get(metaKeys.restore, BUFFERS)
  const fresh = (): RestoreState => ({ source: { generation: position.generation, watermark: position.watermark, checksum: position.checksum }, next: { key: null }, entries: 0, bytes: 0, fingerprint: newFingerprint() })
  if (raw !== undefined) {
    const state = unpackState<RestoreState>(raw, 'restore state')
    const s = state.source
    if (s.generation === position.generation && s.watermark === position.watermark && s.checksum === position.checksum) {
      return { ...state, next: { key: state.next.key === null ? null : Buffer.from(state.next.key) } }
    }
    // The source moved on since the interrupted run: what was copied is of another state.
    for (const range of userRanges(null, null)) await target.clear({ ...range, keyEncoding: 'buffer' })
    return fresh()
  }
  const origin = await target.get(metaKeys.origin, BUFFERS)
  const restored = origin === undefined ? null : decodeOrigin(origin).restored
  if (restored !== undefined && restored !== null && restored.from === position.generation && restored.seq === position.watermark) {
    throw new MirrorError(`${where} was already restored from this source (at seq ${restored.seq}): open it with MirrorLevel`, codes.WRONG_ROLE)
  }
  const anything = await target.keys({ limit: 1, keyEncoding: 'buffer' }).all()
  if (anything.length > 0) {
    const what = anything[0].subarray(0, reservedStart.length).equals(reservedStart) ? 'a mirror-level store' : 'data'
    throw new MirrorError(`${where} already holds ${what}: a restore writes only into a new or empty directory`, codes.WRONG_ROLE)
  }
  return fresh()
}

async function copy (source: RestoreSource, target: InnerDb, state: RestoreState, chunkBytes: number, progress: Progress): Promise<void> {
  let from: CursorPosition | null = { key: state.next.key, offset: 0 }
  let piece: { key: Buffer, chunks: Buffer[] } | null = null
  while (from !== null) {
    const { ops, next, done } = await source.read(from, chunkBytes)
    progress.reached(done ?? null)
    const batch: InnerOp[] = []
    for (const op of ops) {
      if (op.type !== 'put') continue
      if (op.more === true) {
        piece ??= { key: op.key, chunks: [] }
        piece.chunks.push(op.value)
        continue
      }
      const value = piece === null ? op.value : Buffer.concat([...piece.chunks, op.value])
      piece = null
      batch.push({ type: 'put', key: op.key, value })
      addEntry(state.fingerprint, op.key, value)
      state.entries++
      state.bytes += op.key.length + value.length
      state.next = { key: op.key }
    }
    if (batch.length > 0) {
      batch.push({ type: 'put', key: metaKeys.restore, value: packState(state) })
      await target.batch(batch, BUFFERS)
    }
    progress.update()
    from = next
  }
}

// The last, atomic step: the target becomes a primary continuing the source's line.
async function finish (target: InnerDb, position: SourcePosition): Promise<HistoryEntry[]> {
  const before: HistoryEntry[] = position.history ?? [[position.generation, 0]]
  const history: HistoryEntry[] = [...before, [newGeneration(), position.watermark]]
  await target.batch([
    { type: 'put', key: metaKeys.head, value: encodeHead({ seq: position.watermark, logBytes: 0 }) },
    { type: 'put', key: metaKeys.history, value: encodeHistory(history) },
    { type: 'put', key: metaKeys.origin, value: encodeOrigin(newOrigin(false, { restored: { from: position.generation, seq: position.watermark } })) },
    { type: 'del', key: metaKeys.restore }
  ], BUFFERS)
  return history
}

class Progress {
  #options: RestoreOptions
  #total: number | null
  #resumed: boolean
  #state: RestoreState
  #startedAt = Date.now()
  #startBytes: number
  #lastAt = 0
  #phase: RestoreProgress['phase'] = 'copying'
  // LevelDB's on-disk estimate of how much lies before the read's position: done / total is how far it is.
  #done: number | null = null

  constructor (options: RestoreOptions, total: number | null, resumed: boolean, state: RestoreState) {
    this.#options = options
    this.#total = total
    this.#resumed = resumed
    this.#state = state
    this.#startBytes = state.bytes
  }

  reached (done: number | null): void {
    if (done !== null) this.#done = done
  }

  phase (phase: RestoreProgress['phase']): void {
    this.#phase = phase
    this.#emit()
  }

  update (): void {
    if (Date.now() - this.#lastAt >= (this.#options.progressInterval ?? 500)) this.#emit()
  }

  #emit (): void {
    this.#lastAt = Date.now()
    const seconds = Math.max(0.001, (Date.now() - this.#startedAt) / 1000)
    const rate = (this.#state.bytes - this.#startBytes) / seconds
    // Files are compressed: the share of them read so far scales what was copied to the whole.
    const share = this.#total !== null && this.#total > 0 && this.#done !== null ? Math.min(1, this.#done / this.#total) : null
    const total = this.#phase !== 'copying' ? this.#state.bytes : share !== null && share > 0.001 ? this.#state.bytes / share : null
    const left = total === null ? null : Math.max(0, total - this.#state.bytes)
    this.#options.onProgress?.({
      phase: this.#phase,
      entries: this.#state.entries,
      bytes: this.#state.bytes,
      totalBytes: total,
      rate,
      eta: left === null || rate <= 0 || this.#phase !== 'copying' ? null : left / rate,
      resumed: this.#resumed
    })
  }
}

// classic-level is loaded only when a restore needs it, like the server's.
async function classicLevel (path: string, create: boolean): Promise<InnerDb> {
  return new (await import('classic-level')).ClassicLevel(path, { createIfMissing: create }) as unknown as InnerDb
}
