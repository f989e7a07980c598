import { existsSync } from 'node:fs'
import type { ConnectionOptions } from 'node:tls'
import type { AbstractSnapshot } from 'abstract-level'
import type { ReplicaOp } from '../adapter'
import { MirrorError, codes } from '../errors'
import { fingerprintRange, isFingerprint, type Fingerprint } from '../fingerprint'
import { checksum, isHistory, type HistoryEntry } from '../history'
import type { InnerDb } from '../inner'
import { Link, type LinkOptions } from '../net/client'
import { keyBytes, validResource, type Message } from '../net/protocol'
import { StoreCursor, type CursorPosition } from '../replica/cursor'
import { inspectStore } from '../replica/inspect'
import { approximateSize } from '../net/read-session'
import { BUFFERS } from '../inner'
import { metaKeys } from '../keyspace'
import { decodeReplicaState } from '../replica/state'

/** The primary state a replica holds: what a restore copies, and continues. */
export interface SourcePosition {
  generation: string
  watermark: number
  checksum: string | null
  history: HistoryEntry[] | null
}

/** Where a restore reads from: a replica directory, or a resource of a `mirror-level serve`. */
export interface RestoreSource {
  readonly name: string
  position: SourcePosition
  /** About how many bytes the store holds (for progress), or null. */
  approximateBytes: number | null
  /** The next chunk; `done`: about how many of `approximateBytes` lie before where the next one starts. */
  read: (from: CursorPosition, maxBytes: number) => Promise<{ ops: ReplicaOp[], next: CursorPosition | null, done?: number | null }>
  /** The fingerprint of every user entry of the source, at the same state. */
  fingerprint: () => Promise<Fingerprint>
  close: () => Promise<void>
}

/** Parses `tcp://HOST:PORT/RESOURCE` (or `tls://...`); null if `from` is not such a URL. */
export function parseRemote (from: string): { host: string, port: number, resource: string, tls: boolean } | null {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(from)) return null
  const m = /^(tcp|tls):\/\/(\[[^\]]+\]|[^:/@\[\]]+)(?::(\d+))?\/([^/]+)$/i.exec(from)
  if (m === null) throw new MirrorError(`${from}: a server is named tcp://HOST:PORT/RESOURCE (or tls://...)`, codes.INVALID_OPTION)
  const port = m[3] === undefined ? 7410 : Number(m[3])
  if (port < 1 || port > 65535) throw new MirrorError(`${from}: the port must be 1-65535`, codes.INVALID_OPTION)
  if (!validResource(m[4])) throw new MirrorError(`${from}: '${m[4]}' is not a resource name (letters, digits, '.', '_', '-')`, codes.INVALID_OPTION)
  return { host: m[2].replace(/^\[|\]$/g, ''), port, resource: m[4], tls: m[1].toLowerCase() === 'tls' }
}

/** A closed replica directory on this machine (a backup disk). It must be consistent: see `mirror-level recover`. */
export async function openDirSource (dir: string, open: (path: string) => InnerDb | Promise<InnerDb>): Promise<RestoreSource> {
  if (!existsSync(dir)) throw new MirrorError(`${dir} does not exist`, codes.INVALID_OPTION)
  const db = await open(dir)
  try {
    const report = await inspectStore(db)
    if (report.role === 'primary') throw new MirrorError(`${dir} is a primary's store, not a replica: open it as it is, or copy its directory`, codes.WRONG_ROLE)
    if (report.role !== 'replica') throw new MirrorError(`${dir} is not a mirror-level replica`, codes.WRONG_ROLE)
    if (report.replica?.generation === null) {
      throw new MirrorError(`${dir} was never synced (${report.replica.staged !== null ? 'its first copy is not complete: its primary finishes it' : 'it holds no state of a primary'}): there is nothing to restore`, codes.WRONG_ROLE)
    }
    if (!report.consistent) {
      throw new MirrorError(`${dir} is not consistent (a batch is half applied): run \`mirror-level recover ${dir}\` first`, codes.WRONG_ROLE)
    }
    const raw = await db.get(metaKeys.replica, BUFFERS)
    const state = decodeReplicaState(raw!)
    const snapshot: AbstractSnapshot = db.snapshot()
    const cursor = new StoreCursor(db, snapshot)
    return {
      name: dir,
      position: { generation: state.generation!, watermark: state.watermark, checksum: state.history === null ? null : checksum(state.history), history: state.history },
      approximateBytes: await approximateSize(db),
      read: async (from, maxBytes) => {
        const chunk = await cursor.read(from, maxBytes)
        return { ...chunk, done: chunk.next?.key == null ? null : await approximateSize(db, chunk.next.key) }
      },
      fingerprint: async () => await fingerprintRange(db, null, null, snapshot),
      close: async () => {
        await cursor.close()
        await snapshot.close()
        await db.close()
      }
    }
  } catch (err) {
    await db.close().catch(() => {})
    throw err
  }
}

/**
 * A resource of a `mirror-level serve` elsewhere, read over a connection that may only read
 * (the key needs the `read` right). Every read is of one view of the replica, held by the server
 * for the connection; a dropped connection is made again, and the position checked.
 */
export async function openTcpSource (remote: { host: string, port: number, resource: string }, options: { key: string | Buffer, tls?: boolean | ConnectionOptions, connectTimeout?: number, requestTimeout?: number }): Promise<RestoreSource> {
  const linkOptions: LinkOptions = { ...remote, tls: options.tls, connectTimeout: options.connectTimeout, requestTimeout: options.requestTimeout }
  const key = keyBytes(options.key)
  let link: Link | null = null
  const connect = async (): Promise<Link> => {
    if (link !== null && !link.dead) return link
    link = (await Link.open(linkOptions, key, new AbortController().signal, 'read')).link
    return link
  }
  // Retries what a dropped connection interrupted, a few times; the view is new after a reconnect,
  // so the caller checks the position it reports.
  const request = async (m: Message): Promise<Message> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await (await connect()).request(m)
      } catch (err) {
        const code = (err as { code?: string }).code
        if (attempt >= 4 || (code !== codes.UNREACHABLE && code !== codes.TIMEOUT)) throw err
        await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt))
      }
    }
  }
  const host = remote.host.includes(':') ? `[${remote.host}]` : remote.host
  const name = `${options.tls !== undefined && options.tls !== false ? 'tls' : 'tcp'}://${host}:${remote.port}/${remote.resource}`
  const first = await request({ t: 'read', from: { key: null, offset: 0 }, maxBytes: 1, history: true })
  const position = checkPosition(first.position, name)
  const same = (p: unknown): void => {
    const now = checkPosition(p, name)
    if (now.watermark !== position.watermark || now.generation !== position.generation || now.checksum !== position.checksum) {
      throw new MirrorError(`${name} moved on during the restore (from seq ${position.watermark} to ${now.watermark}): run the restore again to start over`, codes.MISMATCH)
    }
  }
  return {
    name,
    position,
    approximateBytes: typeof first.approximateBytes === 'number' ? first.approximateBytes : null,
    read: async (from, maxBytes) => {
      const m = await request({ t: 'read', from, maxBytes })
      same(m.position)
      return { ops: m.ops as ReplicaOp[], next: (m.next ?? null) as CursorPosition | null, done: typeof m.approximateDone === 'number' ? m.approximateDone : null }
    },
    fingerprint: async () => {
      const m = await request({ t: 'fingerprint', ranges: [{ after: null, upto: null }] })
      same(m.position)
      const fp = (m.fingerprints as unknown[])?.[0]
      if (!isFingerprint(fp)) throw new MirrorError(`${name} sent a malformed fingerprint`, codes.PROTOCOL)
      return fp
    },
    close: async () => { (link as Link | null)?.end() }
  }
}

function checkPosition (p: unknown, name: string): SourcePosition {
  const x = p as Record<string, unknown>
  if (typeof x !== 'object' || x === null || !Number.isSafeInteger(x.watermark)) throw new MirrorError(`${name} sent a malformed position`, codes.PROTOCOL)
  if (x.generation === null) throw new MirrorError(`${name} was never synced: there is nothing to restore`, codes.WRONG_ROLE)
  if (typeof x.generation !== 'string') throw new MirrorError(`${name} sent a malformed position`, codes.PROTOCOL)
  return {
    generation: x.generation,
    watermark: x.watermark as number,
    checksum: typeof x.checksum === 'string' ? x.checksum : null,
    history: x.history === undefined ? null : isHistory(x.history) ? x.history : null
  }
}
