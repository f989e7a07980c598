import { describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { ClassicLevel } from 'classic-level'
import { ReplicaEngine } from '../lib/replica/engine'
import { metaKey } from '../lib/keyspace'
import { unpackState } from '../lib/replica/part-codec'
import { tempDir, userData } from './helpers'
import { prefixIndex } from './fixtures/history'

const child = fileURLToPath(new URL('./fixtures/replicated-writer.ts', import.meta.url))

function run (args: string[], killAfterMs: number | null): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let acked = -1
    let out = ''
    let err = ''
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const lines = out.split('\n')
      out = lines.pop()!
      for (const line of lines) {
        if (line === 'ready' && killAfterMs !== null) setTimeout(() => p.kill('SIGKILL'), killAfterMs)
        else if (line.startsWith('ack ')) acked = Math.max(acked, Number(line.slice(4)))
      }
    })
    p.stderr.on('data', (d: Buffer) => { err += d.toString() })
    p.on('error', reject)
    p.on('close', (code, signal) => {
      if (killAfterMs !== null && signal === 'SIGKILL') resolve(acked)
      else if (killAfterMs === null && code === 0) resolve(acked)
      else reject(new Error(`child ended with ${code ?? signal}: ${err}`))
    })
  })
}

async function read (dir: string): Promise<{ data: Map<string, string>, committedJournal: boolean }> {
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await db.open()
  const data = await userData(db as never)
  const raw = await db.get(metaKey('journal'))
  await db.close()
  const committedJournal = raw !== undefined && unpackState<{ committed: boolean }>(raw, 'journal').committed
  return { data, committedJournal }
}

describe('replication crash safety (real child processes, SIGKILL)', () => {
  it('the replica is a prefix state whenever it is stopped, never ahead of the primary, and converges; nothing acknowledged is lost', async () => {
    const { dir, cleanup } = tempDir()
    const primaryDir = `${dir}/primary`
    const replicaDir = `${dir}/replica`
    try {
      let start = 0
      let journaled = 0
      let replicaBest = 0
      for (let round = 0; round < 14; round++) {
        // Every other round the replica journals every batch (maxApplyBytes 1): the kills then land in journaled applies too.
        const acked = await run([primaryDir, replicaDir, String(start), String(round % 3 === 0 ? 0 : 20), String(round % 2 === 0 ? 1 : 32 * 1024 * 1024)], 80 + Math.floor(Math.random() * 400))

        const primary = (await read(primaryDir)).data
        // Searched from the write after the last ack: a state equal to an earlier prefix too (the last
        // acknowledged write deleted a key that was absent) must not pass for one before the ack.
        const p = prefixIndex(primary, Math.max(start, acked + 1), Math.max(start, acked + 1) + 500_000)
        expect(p, `round ${round}: primary is no prefix state past ack ${acked}`).toBeGreaterThan(acked)

        // The replica as a plain reader sees it: a prefix state unless a committed journal awaits recovery.
        const raw = await read(replicaDir)
        if (raw.committedJournal) journaled++
        else expect(prefixIndex(raw.data, 0, p), `round ${round}: replica (raw) is no prefix state`).toBeGreaterThanOrEqual(0)

        // As the replica engine opens it (recovery first): a prefix state, not ahead of the primary.
        const engine = new ReplicaEngine(new ClassicLevel(replicaDir) as never)
        await engine.open()
        await engine.close()
        const recovered = (await read(replicaDir)).data
        const r = prefixIndex(recovered, 0, p)
        expect(r, `round ${round}: replica is no prefix state at or before the primary`).toBeGreaterThanOrEqual(0)
        replicaBest = Math.max(replicaBest, r)
        start = p
      }
      // The replica kept up between kills, not only at the end.
      expect(replicaBest).toBeGreaterThan(start / 2)
      await run([primaryDir, replicaDir, 'settle', '0'], null)
      const primary = (await read(primaryDir)).data
      const replica = (await read(replicaDir)).data
      expect(replica).toEqual(primary)
      expect(prefixIndex(primary, start, start + 500_000)).toBeGreaterThanOrEqual(start)
      // Reported for the record: how often a kill landed between a commit record and its apply.
      console.log(`replication crash test: ${journaled} of 14 kills left a committed journal to recover`)
    } finally {
      cleanup()
    }
  })
})
