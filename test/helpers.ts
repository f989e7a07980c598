import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A fresh temporary directory, removed by the returned cleanup function. */
export function tempDir (name = 'mirror-level-test-'): { dir: string, cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), name))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** Runs a TypeScript file in a child node process (through tsx) and collects its output. */
export function runTs (file: string, args: string[], options: { timeoutMs?: number } = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

import { BUFFERS, type InnerDb } from '../lib/inner'
import { readRecords, storedHead } from '../lib/log/records'
import type { LogRecord } from '../lib/log/record-codec'
import { RESERVED_RANGE } from '../lib/keyspace'

/** The head and every log record, read straight from an (open) inner db. */
export async function inspectLog (inner: InnerDb): Promise<{ head: { seq: number, logBytes: number }, records: LogRecord[], bytes: number }> {
  const head = (await storedHead({ db: inner })) ?? { seq: 0, logBytes: 0 }
  const records: LogRecord[] = []
  let bytes = 0
  for await (const r of readRecords({ db: inner })) {
    records.push({ from: r.from, to: r.to, keys: r.keys })
    bytes += r.bytes
  }
  return { head, records, bytes }
}

/** Every user entry (outside the reserved range) of an inner db, as hex key -> hex value. */
export async function userData (db: InnerDb): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const range of [{ lt: RESERVED_RANGE.gte }, { gte: RESERVED_RANGE.lt }]) {
    for await (const [k, v] of db.iterator({ ...range, ...BUFFERS })) out.set(k.toString('hex'), v.toString('hex'))
  }
  return out
}

/** Every user entry of a closed classic-level directory (see userData). */
export async function dirData (path: string): Promise<Map<string, string>> {
  const { ClassicLevel } = await import('classic-level')
  const db = new ClassicLevel(path, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  try {
    return await userData(db as never)
  } finally {
    await db.close()
  }
}

/** Whether nothing else holds the LevelDB lock of `path` (opens it and closes it again). */
export async function unlocked (path: string): Promise<boolean> {
  const { ClassicLevel } = await import('classic-level')
  const peek = new ClassicLevel(path)
  try {
    await peek.open()
    return true
  } catch {
    return false
  } finally {
    await peek.close()
  }
}
