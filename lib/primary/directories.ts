import { realpathSync } from 'node:fs'
import { basename, dirname, resolve } from 'node:path'
import { MirrorError, codes } from '../errors'

/** The directory of a classic-level db, or null for a db that lives elsewhere (memory-level). */
export function locationOf (db: unknown): string | null {
  const location = (db as { location?: unknown } | null)?.location
  return typeof location === 'string' && location.length > 0 ? location : null
}

// The canonical path of a directory that may not exist yet: its parent's real path and its name.
function canonical (path: string): string {
  const full = resolve(path)
  try {
    return realpathSync(full)
  } catch {
    const parent = dirname(full)
    return parent === full ? full : resolve(canonical(parent), basename(full))
  }
}

/**
 * Refuses two of `dbs` in one directory, however their paths are spelled (`app`, `./x/../app`, a
 * symlink): LevelDB's lock is per process and per path string, so a second instance on the same
 * directory is not stopped by it, and the two destroy each other's files. Synchronous, so that it
 * runs in the constructor, in the same tick as the dbs were made: the later of the two is closed
 * before abstract-level's deferred open opens it.
 */
export function refuseSharedDirectories (dbs: Array<{ what: string, db: unknown }>): void {
  const seen = new Map<string, string>()
  for (const { what, db } of dbs) {
    const location = locationOf(db)
    if (location === null) continue
    const dir = canonical(location)
    const other = seen.get(dir)
    if (other !== undefined) {
      void (db as { close?: () => Promise<void> }).close?.().catch(() => {})
      throw new MirrorError(`${what} is in the same directory as ${other} (${dir}): two databases in one directory destroy each other`, codes.INVALID_OPTION)
    }
    seen.set(dir, what)
  }
}
