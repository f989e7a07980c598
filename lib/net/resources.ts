import { MirrorError, codes } from '../errors'
import type { ReplicaEngine } from '../replica/engine'

interface Entry {
  opening: Promise<ReplicaEngine>
  engine: ReplicaEngine | null
  /** The primary streaming to it, if one is. */
  writer: { peer: string } | null
  users: Set<object>
  /** Settles when the engine has closed after its last user left. */
  closing: Promise<void> | null
}

/** A resource in use by a connection: its replica engine, and how to give it back. */
export interface HeldResource {
  engine: ReplicaEngine
  /** Notes that a batch was applied (for status). */
  applied: () => void
  release: () => Promise<void>
}

/**
 * The server's open resources: one replica engine per resource, opened by its first user (a
 * primary, a restore, a status or verify connection) and closed when the last one leaves. At most
 * one primary per resource; readers share the engine with it and read through its consistent view.
 */
export class Resources {
  #open: (name: string, create: boolean) => Promise<ReplicaEngine>
  #entries = new Map<string, Entry>()
  #lastBatch = new Map<string, number>()

  constructor (open: (name: string, create: boolean) => Promise<ReplicaEngine>) {
    this.#open = open
  }

  async acquire (name: string, user: { peer: string }, writer: boolean, create = writer): Promise<HeldResource> {
    let entry = this.#entries.get(name)
    while (entry?.closing !== null && entry?.closing !== undefined) {
      await entry.closing
      entry = this.#entries.get(name)
    }
    if (entry !== undefined && writer && entry.writer !== null) {
      throw new MirrorError(`resource '${name}' already has a primary streaming to it (from ${entry.writer.peer}); one primary per resource`, codes.BUSY)
    }
    if (entry === undefined) {
      const fresh: Entry = { opening: this.#open(name, create), engine: null, writer: null, users: new Set(), closing: null }
      fresh.opening.then((engine) => { fresh.engine = engine }, () => {})
      this.#entries.set(name, fresh)
      entry = fresh
    }
    const held = entry
    held.users.add(user)
    if (writer) held.writer = user
    let engine: ReplicaEngine
    try {
      engine = await held.opening
    } catch (err) {
      await this.#leave(name, held, user)
      throw err
    }
    let released = false
    return {
      engine,
      applied: () => { this.#lastBatch.set(name, Date.now()) },
      release: async () => {
        if (released) return
        released = true
        await this.#leave(name, held, user)
      }
    }
  }

  async #leave (name: string, entry: Entry, user: object): Promise<void> {
    entry.users.delete(user)
    if (entry.writer === user) entry.writer = null
    if (entry.users.size > 0 || entry.closing !== null) return await entry.closing?.catch(() => {})
    entry.closing = (async () => {
      try {
        const engine = await entry.opening.catch(() => null)
        await engine?.close()
      } finally {
        if (this.#entries.get(name) === entry) this.#entries.delete(name)
      }
    })()
    await entry.closing
  }

  /** LevelDB's repair of `name`'s directory, for its primary's verify; only while nobody else uses it. */
  async salvage (name: string, user: object): Promise<void> {
    const entry = this.#entries.get(name)
    if (entry === undefined || entry.engine === null || !entry.users.has(user)) throw new MirrorError(`resource '${name}' is not open for this connection`, codes.PROTOCOL)
    if (entry.users.size > 1) throw new MirrorError(`resource '${name}' is being read by another connection: it cannot be salvaged now`, codes.BUSY)
    await entry.engine.salvage()
  }

  /** Whether a primary streams to `name` now, and when it last applied a batch (in this server's life). */
  activity (name: string): { primary: string | null, lastBatchAt: number | null } {
    const entry = this.#entries.get(name)
    return { primary: entry?.writer?.peer ?? null, lastBatchAt: this.#lastBatch.get(name) ?? null }
  }
}
