// What every command of the command line shares: usage errors, reading files, opening a closed store.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import type { InnerDb } from '../lib/inner'

/** A mistake in how the command was called: exit 2 with the message. */
export class UsageError extends Error {}

export function fail (message: string, code = 1): never {
  process.stderr.write(`mirror-level: ${message}\n`)
  process.exit(code)
}

export function readFile (file: string, what: string): Buffer {
  try {
    return readFileSync(file)
  } catch (err) {
    throw new UsageError(`cannot read the ${what} ${file}: ${(err as Error).message}`)
  }
}

export function wholeNumber (flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  if (!/^\d+$/.test(text)) throw new UsageError(`--${flag} must be a whole number, got '${text}'`)
  return Number(text)
}

export function onePositional (positionals: string[], command: string, what = 'directory'): string {
  if (positionals.length !== 1) throw new UsageError(`${command} needs one ${what}${positionals.length > 1 ? `, got ${positionals.length}` : ''}`)
  return positionals[0]
}

/**
 * A store directory that nothing else has open, for the commands that work on closed stores. A
 * directory without a database is refused before LevelDB writes its LOCK and LOG files into it.
 */
export function closedStore (dir: string): InnerDb {
  checkStoreDir(dir)
  return new ClassicLevel(dir, { createIfMissing: false }) as unknown as InnerDb
}

/** Refuses a path that is not a LevelDB directory, without opening anything. */
export function checkStoreDir (dir: string): void {
  if (!existsSync(dir)) throw new UsageError(`${dir} does not exist`)
  if (!existsSync(join(dir, 'CURRENT'))) throw new Error(`${dir} is not a LevelDB database`)
}

/** A failed open says only "Database failed to open": the reason is its cause. */
export function explain (err: Error & { code?: string, cause?: unknown }): string {
  let message = err.code !== undefined ? `${err.message} (${err.code})` : err.message
  let cause = err.cause as (Error & { code?: string, cause?: unknown }) | undefined
  let locked = err.code === 'LEVEL_LOCKED'
  while (cause instanceof Error) {
    message += `: ${cause.message}${cause.code !== undefined ? ` (${cause.code})` : ''}`
    locked ||= cause.code === 'LEVEL_LOCKED'
    cause = cause.cause as typeof cause
  }
  // As status, recover and promote say it: LevelDB's own words name only the LOCK file.
  return locked ? `a store is in use by another process (a primary, a replica server or another program has it open): ${message}` : message
}

/** Runs `fn` on a closed store, turning a failed open into what it means (in use, not a database). */
export async function withClosedStore<T> (dir: string, fn: (db: InnerDb) => Promise<T>): Promise<T> {
  const db = closedStore(dir)
  try {
    return await fn(db)
  } catch (err) {
    const e = err as Error & { code?: string, cause?: Error & { code?: string } }
    if (e.code !== 'LEVEL_DATABASE_NOT_OPEN') throw err
    if (e.cause?.code === 'LEVEL_LOCKED') throw new Error(`${dir} is in use by another process (a primary, a replica server or another program has it open)`)
    // A damaged CURRENT file is no database to repair: LevelDB's repair would make one there.
    if (e.cause?.code === 'LEVEL_CORRUPTION' && !/CURRENT/.test(e.cause.message)) throw new Error(`${dir} is damaged (LevelDB reports corruption: ${e.cause.message}); \`mirror-level recover ${dir}\` runs LevelDB's repair on it`)
    if (/Permission denied|Read-only file system/.test(e.cause?.message ?? '')) throw new Error(`${dir} may not be written by this user, or is on a read-only file system (${e.cause?.message ?? ''}): LevelDB writes its lock and log even to read`)
    throw new Error(`${dir} is not a LevelDB database (${e.cause?.message ?? e.message})`)
  } finally {
    await db.close().catch(() => {})
  }
}

/** The key in a key file: its text (whitespace around it ignored). */
export function keyFile (file: string | undefined, command: string): string {
  if (file === undefined) throw new UsageError(`${command} needs --key-file FILE`)
  return readFile(file, 'key file').toString('utf8')
}
