import { describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { ClassicLevel } from 'classic-level'
import { inspectLog, tempDir, userData } from './helpers'
import { prefixIndex } from './fixtures/history'

const writer = fileURLToPath(new URL('./fixtures/crash-writer.ts', import.meta.url))

// Runs the writer from `start` and SIGKILLs it `afterMs` after it is ready. Returns the highest
// index it acknowledged (-1 if none).
function runAndKill (dir: string, start: number, afterMs: number, budget: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', writer, dir, String(start), String(budget)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let acked = -1
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const lines = out.split('\n')
      out = lines.pop()!
      for (const line of lines) {
        if (line === 'ready') setTimeout(() => child.kill('SIGKILL'), afterMs)
        else if (line.startsWith('ack ')) acked = Math.max(acked, Number(line.slice(4)))
      }
    })
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`writer exited with ${code}: ${err}`))
      else resolve(acked)
    })
  })
}

describe('crash safety (real child process, SIGKILL)', () => {
  it('after every kill the store is the history up to some write at or past the last acknowledged one, and log and data agree', async () => {
    const { dir, cleanup } = tempDir()
    try {
      let start = 0
      let totalAcked = 0
      for (let round = 0; round < 20; round++) {
        const budget = round % 2 === 0 ? 64 * 1024 * 1024 : 4096 // odd rounds compact the log hard
        const acked = await runAndKill(dir, start, 50 + Math.floor(Math.random() * 400), budget)
        totalAcked += acked >= start ? acked - start + 1 : 0
        const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
        await db.open()
        const data = await userData(db as never)
        const { head, records, bytes } = await inspectLog(db as never)
        await db.close()

        // Prefix consistency and no lost acknowledgement: data equals history[0, m) for some m > acked.
        // Acks still in the child's stdout buffer die with it, so the store may be well past the
        // last ack we read; the search is bounded by what the child could have written.
        const match = prefixIndex(data, Math.max(start, acked + 1), Math.max(start, acked + 1) + 500_000)
        expect(match, `round ${round}: store is no prefix state past ack ${acked}`).toBeGreaterThan(acked)

        // Log and data agree: consecutive records from where the log starts up to the head, the
        // stored size is right, and every key present was written through the log.
        expect(bytes).toBe(head.logBytes)
        if (records.length > 0) expect(records.at(-1)!.to).toBe(head.seq)
        for (let i = 1; i < records.length; i++) expect(records[i].from).toBe(records[i - 1].to)
        const any = records.some((r) => r.keys === null)
        if (!any) {
          const named = new Set(records.flatMap((r) => r.keys!.map((k) => k.toString('hex'))))
          for (const k of data.keys()) expect(named.has(k)).toBe(true)
        }
        start = match
      }
      expect(totalAcked).toBeGreaterThan(100)
    } finally {
      cleanup()
    }
  })
})

