import { describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { ReplicaEngine } from '../lib/replica/engine'
import { ReplicaReader } from '../lib/replica/reader'
import { inspectStore } from '../lib/replica/inspect'
import { recoverStore } from '../lib/replica/recover'
import { promoteStore } from '../lib/replica/promote'
import { openDirSource } from '../lib/recovery/sources'
import type { BatchPart } from '../lib/adapter'
import { dirData, tempDir, userData } from './helpers'
import { runCli } from './tcp-helpers'

// A first copy into a replica that holds nothing is written in place, not journaled: nothing
// there needs keeping readable, so its data is written once. These tests hold it to what it
// promises instead: readers show nothing until it lands, status says the data is half a copy,
// a copy cut short resumes (or starts over) and ends equal, and nothing half written passes for
// a value or a state.

const B = (s: string): Buffer => Buffer.from(s)
const put = (k: string, v: string, more?: true): BatchPart['ops'][number] => ({ type: 'put', key: B(k), value: B(v), ...(more === true ? { more } : {}) })
const hex = (entries: Array<[string, string]>): Map<string, string> => new Map(entries.map(([k, v]) => [B(k).toString('hex'), B(v).toString('hex')]))
const copyPart = (index: number, final: boolean, range: BatchPart['range'] | undefined, ops: BatchPart['ops'], to = 5): BatchPart =>
  ({ generation: 'g1', from: 0, to, index, final, full: true, ...(range === undefined ? {} : { range }), ops })

describe('a first copy into a replica that held nothing', () => {
  it('is written in place part by part; readers and status say it holds no state until the final part, then it is whole', async () => {
    const { dir, cleanup } = tempDir()
    const db = new ClassicLevel(`${dir}/replica`)
    const engine = new ReplicaEngine(db as never, { maxApplyBytes: 1 })
    await engine.open()
    const reader = new ReplicaReader(engine)
    await reader.open()
    try {
      await engine.apply(copyPart(0, false, { after: null, upto: B('f') }, [put('a', '1'), put('c', '2')]))
      expect(await userData(db as never)).toEqual(hex([['a', '1'], ['c', '2']]))
      expect(await reader.get('a')).toBeUndefined()
      expect(await reader.getMany(['a', 'c'])).toEqual([undefined, undefined])
      expect(await reader.iterator().all()).toEqual([])
      expect(await engine.fingerprint([{ after: null, upto: null }])).toEqual([{ count: 0, bytes: 0, sum: [0, 0, 0, 0] }])
      expect(await engine.digests({ after: null, upto: null }, null, 10)).toEqual({ entries: [], more: false })
      const report = await inspectStore(db as never)
      expect(report.consistent).toBe(false)
      expect(report.replica!.staged).toMatchObject({ full: true, inPlace: true, parts: 1, committed: false })
      expect(report.text).toMatch(/half written/)

      // A value in pieces is written once it is whole, never a part of it.
      await engine.apply(copyPart(1, false, { after: B('f'), upto: B('p') }, [put('g', 'xx', true)]))
      expect(await db.get('g')).toBeUndefined()
      await engine.apply(copyPart(2, false, undefined, [put('g', 'yy', true)]))
      expect(await db.get('g')).toBeUndefined()
      await engine.apply(copyPart(3, false, undefined, [put('g', 'zz')]))
      expect(await db.get('g')).toBe('xxyyzz')
      expect(engine.hello()).toMatchObject({ generation: null, watermark: 0, pending: { to: 5, parts: 4, upto: B('p') } })

      await engine.apply(copyPart(4, true, { after: B('p'), upto: null }, [put('q', '3')]))
      expect(engine.hello()).toMatchObject({ generation: 'g1', watermark: 5, pending: null })
      expect(await reader.iterator().all()).toEqual([['a', '1'], ['c', '2'], ['g', 'xxyyzz'], ['q', '3']])
      expect((await inspectStore(db as never)).consistent).toBe(true)
    } finally {
      await reader.close()
      await engine.close()
      cleanup()
    }
  })

  it('readers show nothing while parts land, also while a copy started over deletes what the old one left, and with data a copy is to overwrite', async () => {
    const { dir, cleanup } = tempDir()
    const path = `${dir}/replica`
    const many = (tag: string): BatchPart['ops'] => Array.from({ length: 20_000 }, (_, i) => put(`k${String(i).padStart(5, '0')}`, tag))
    // Polls the reader until `work` is done: every read sees nothing, unless the copy has landed
    // (a replica once synced stays so here: a read that saw data had a synced view).
    const watch = async (engine: ReplicaEngine, reader: ReplicaReader, work: Promise<unknown>): Promise<number> => {
      let done = false
      let reads = 0
      const polling = (async () => {
        while (!done) {
          const seen = await reader.keys({ limit: 1 }).all()
          if (seen.length > 0) expect(engine.hello().generation, `read ${reads} saw ${seen[0]} before the copy landed`).not.toBeNull()
          else expect(await reader.get('k00000')).toBeUndefined()
          reads++
          // An empty view answers without I/O: let the apply's writes run.
          await new Promise((resolve) => setImmediate(resolve))
        }
      })()
      await work.finally(() => { done = true })
      await polling
      return reads
    }
    try {
      const engine = new ReplicaEngine(new ClassicLevel(path) as never)
      await engine.open()
      const reader = new ReplicaReader(engine)
      await reader.open()
      let reads = await watch(engine, reader, engine.apply(copyPart(0, false, { after: null, upto: B('m') }, many('a'))))
      await reader.close()
      await engine.close()
      const again = new ReplicaEngine(new ClassicLevel(path) as never)
      await again.open()
      const second = new ReplicaReader(again)
      await second.open()
      // Started over in another generation: the old copy's keys are deleted, then the new ones written.
      reads += await watch(again, second, again.apply({ ...copyPart(0, false, { after: null, upto: B('m') }, [put('a', '1')]), generation: 'g2' }))
      expect(await again.db.keys({ lt: B('m'), keyEncoding: 'buffer' } as never).all()).toEqual([B('a')])
      await second.close()
      await again.close()

      // Data in a store never synced, to be replaced by a copy with overwrite: not a state of any primary.
      const other = `${dir}/foreign`
      const plain = new ClassicLevel<Buffer, Buffer>(other, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
      await plain.batch(many('theirs').map((op) => ({ type: 'put' as const, key: op.key, value: (op as { value: Buffer }).value })))
      await plain.close()
      const third = new ReplicaEngine(new ClassicLevel(other) as never, { maxApplyBytes: 1 })
      await third.open()
      const reader3 = new ReplicaReader(third)
      await reader3.open()
      reads += await watch(third, reader3, third.apply({ ...copyPart(0, true, { after: null, upto: null }, [put('b', '2')]), overwrite: true }))
      expect(await reader3.iterator().all()).toEqual([['b', '2']])
      await reader3.close()
      await third.close()
      expect(reads).toBeGreaterThan(3)
    } finally {
      cleanup()
    }
  })

  it('cut short, reopens as its own copy (not foreign data) and resumes; recover keeps it and says what the data is', async () => {
    const { dir, cleanup } = tempDir()
    const path = `${dir}/replica`
    try {
      const engine = new ReplicaEngine(new ClassicLevel(path) as never)
      await engine.open()
      await engine.apply(copyPart(0, false, { after: null, upto: B('f') }, [put('a', '1')]))
      await engine.close()
      const recovered = await recoverStore(new ClassicLevel(path) as never)
      expect(recovered.action).toBe('kept')
      expect(recovered.text).toMatch(/written in place/)
      expect(recovered.after.consistent).toBe(false)
      // The command says so by its exit code too (a hostile trial: it exited 0, which its help
      // promises only for a directory that is consistent afterwards).
      const cli = await runCli(['recover', path])
      expect(cli.code, cli.stderr).toBe(1)
      expect(cli.stdout).toMatch(/written in place/)
      // It holds no state to promote or restore from, and says so (recover cannot make it one).
      await expect(promoteStore(new ClassicLevel(path) as never)).rejects.toMatchObject({ code: 'MIRROR_WRONG_ROLE', message: expect.stringMatching(/never synced/) })
      await expect(openDirSource(path, (p) => new ClassicLevel(p) as never)).rejects.toMatchObject({ code: 'MIRROR_WRONG_ROLE', message: expect.stringMatching(/never synced \(its first copy is not complete/) })

      const again = new ReplicaEngine(new ClassicLevel(path) as never)
      await again.open()
      expect(again.hello()).toMatchObject({ foreign: null, pending: { to: 5, parts: 1, upto: B('f') } })
      // A bad first part of a new batch is refused and changes nothing: the copy stays resumable.
      await expect(again.apply(copyPart(0, false, { after: B('b'), upto: B('f') }, []))).rejects.toMatchObject({ code: 'MIRROR_BAD_PART' })
      expect(again.hello()).toMatchObject({ pending: { to: 5, parts: 1, upto: B('f') } })
      await again.apply(copyPart(1, true, { after: B('f'), upto: null }, [put('x', '2')], 6))
      expect(again.hello()).toMatchObject({ generation: 'g1', watermark: 6, pending: null })
      await again.close()
      expect(await dirData(path)).toEqual(hex([['a', '1'], ['x', '2']]))
    } finally {
      cleanup()
    }
  })

  it('cut in the middle of a value, starts over: the rest of the value is refused, no part of it is written, and a new copy deletes what the old one left', async () => {
    const { dir, cleanup } = tempDir()
    const path = `${dir}/replica`
    try {
      const engine = new ReplicaEngine(new ClassicLevel(path) as never)
      await engine.open()
      await engine.apply(copyPart(0, false, { after: null, upto: B('m') }, [put('a', '1'), put('b', '2'), put('c', 'xx', true)]))
      await engine.close()

      const again = new ReplicaEngine(new ClassicLevel(path) as never)
      await again.open()
      expect(again.hello()).toMatchObject({ foreign: null, pending: null })
      await expect(again.apply(copyPart(1, false, undefined, [put('c', 'yy')]))).rejects.toMatchObject({ code: 'MIRROR_BAD_PART' })
      expect(await again.db.get(B('c'), { keyEncoding: 'buffer' } as never)).toBeUndefined()
      // The primary changed meanwhile: 'b' is gone, 'd' is new.
      await again.apply(copyPart(0, true, { after: null, upto: null }, [put('a', '1'), put('c', 'xxyy'), put('d', '4')], 9))
      expect(again.hello()).toMatchObject({ generation: 'g1', watermark: 9, pending: null })
      await again.close()
      expect(await dirData(path)).toEqual(hex([['a', '1'], ['c', 'xxyy'], ['d', '4']]))
    } finally {
      cleanup()
    }
  })

  it('started over, a copy whose first write fails leaves the old one\'s header: its data is still not taken for foreign data', async () => {
    const { dir, cleanup } = tempDir()
    const path = `${dir}/replica`
    try {
      const db = new ClassicLevel(path)
      const engine = new ReplicaEngine(db as never)
      await engine.open()
      await engine.apply(copyPart(0, false, { after: null, upto: B('f') }, [put('a', '1'), put('b', '2')]))
      // Fault injection: the disk refuses the next writes (the engine's batches reach `_batch`).
      const inner = db as unknown as { _batch: (...args: unknown[]) => Promise<void> }
      const original = inner._batch.bind(db)
      let failing = true
      inner._batch = async (...args) => { if (failing) throw new Error('disk full'); return await original(...args) }
      await expect(engine.apply(copyPart(0, false, { after: null, upto: B('f') }, [put('a', '9')], 7))).rejects.toThrow('disk full')
      failing = false
      await engine.close()
      const again = new ReplicaEngine(new ClassicLevel(path) as never)
      await again.open()
      expect(again.hello().foreign).toBeNull()
      await again.apply(copyPart(0, true, { after: null, upto: null }, [put('a', '9')], 7))
      await again.close()
      expect(await dirData(path)).toEqual(hex([['a', '9']]))
    } finally {
      cleanup()
    }
  })

  it('a replica that holds a state, or foreign data it is told to overwrite, gets its full copy staged: its data is untouched until the copy is whole', async () => {
    const { dir, cleanup } = tempDir()
    const path = `${dir}/replica`
    try {
      const plain = new ClassicLevel(path)
      await plain.put('mine', 'kept')
      await plain.close()
      const engine = new ReplicaEngine(new ClassicLevel(path) as never, { maxApplyBytes: 1 })
      await engine.open()
      expect(engine.hello().foreign).toBe('data')
      await engine.apply({ ...copyPart(0, false, { after: null, upto: B('f') }, [put('a', '1')]), overwrite: true })
      await engine.close()
      expect(await dirData(path)).toEqual(hex([['mine', 'kept']]))
      const report = await status(path)
      expect(report.replica!.staged).toMatchObject({ full: true, inPlace: false })
    } finally {
      cleanup()
    }
  })

  it('SIGKILLed at random moments while the primary changes between runs: resumes, shows nothing until it lands, and ends equal', async () => {
    const { dir, cleanup } = tempDir()
    const primaryDir = `${dir}/primary`
    const replicaDir = `${dir}/replica`
    try {
      // A store that held data before it was wrapped: 5000 small values and 30 larger than a part.
      const seed = new ClassicLevel<string, Buffer>(primaryDir, { valueEncoding: 'buffer' })
      const ops: Array<{ type: 'put', key: string, value: Buffer }> = []
      for (let i = 0; i < 5000; i++) ops.push({ type: 'put', key: `k${String(i).padStart(5, '0')}`, value: randomBytes(200 + (i % 7) * 300) })
      for (let i = 0; i < 30; i++) ops.push({ type: 'put', key: `k${String(i * 83).padStart(5, '0')}x`, value: randomBytes(40_000 + i) })
      await seed.batch(ops)
      await seed.close()

      let halfWritten = 0
      let resumable = 0
      let done = false
      for (let round = 0; round < 16 && !done; round++) {
        done = await runCopier(primaryDir, replicaDir, round < 15 ? 10 + Math.floor(Math.random() * 150) : null)
        if (done) break
        const report = await status(replicaDir)
        if (report.replica === undefined || report.replica.generation === null) {
          // Never synced: whatever the copy wrote so far, no reader shows it, and it is not foreign.
          if (report.replica?.staged?.inPlace === true) halfWritten++
          const engine = new ReplicaEngine(new ClassicLevel(replicaDir) as never)
          await engine.open()
          const reader = new ReplicaReader(engine, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
          await reader.open()
          expect(await reader.keys().all(), `round ${round}: a half-written copy shows nothing`).toEqual([])
          const hello = engine.hello()
          expect(hello.foreign).toBeNull()
          if (hello.pending !== null) resumable++
          await reader.close()
          await engine.close()
        } else {
          // Synced: exactly the primary (the primary changes only between runs).
          expect(report.consistent).toBe(true)
          expect(await dirData(replicaDir)).toEqual(await dirData(primaryDir))
        }
        // The primary changes while the copier is down: puts, deletes, a large value.
        const primary = new MirrorLevel(new ClassicLevel(primaryDir))
        await primary.open()
        await primary.batch([
          { type: 'put', key: `k${String(round * 97).padStart(5, '0')}`, value: `changed in round ${round}` },
          { type: 'del', key: `k${String(round * 97 + 1).padStart(5, '0')}` },
          { type: 'put', key: `new${round}`, value: 'v'.repeat(round % 2 === 0 ? 50_000 : 10) }
        ])
        await primary.close()
      }
      console.log(`first-copy crash test: ${halfWritten} kills left a half-written copy, ${resumable} offered for resuming`)
      expect(done, 'the copy finished once the kills stopped').toBe(true)
      expect(halfWritten, 'some kills landed while the copy was half written').toBeGreaterThan(0)
      expect(resumable, 'some of those copies were offered for resuming').toBeGreaterThan(0)
      expect((await status(replicaDir)).consistent).toBe(true)
      expect(await dirData(replicaDir)).toEqual(await dirData(primaryDir))
    } finally {
      cleanup()
    }
  })
})

async function status (path: string): Promise<Awaited<ReturnType<typeof inspectStore>>> {
  const db = new ClassicLevel(path)
  try {
    return await inspectStore(db as never)
  } finally {
    await db.close()
  }
}

const copier = fileURLToPath(new URL('./fixtures/first-copier.ts', import.meta.url))

// Runs the copier; with `killAfterMs`, SIGKILLs it that long after it is ready. True if it finished the copy.
function runCopier (primaryDir: string, replicaDir: string, killAfterMs: number | null): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', copier, primaryDir, replicaDir], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      if (killAfterMs !== null && out.includes('ready\n')) {
        setTimeout(() => p.kill('SIGKILL'), killAfterMs)
        killAfterMs = null
      }
    })
    p.stderr.on('data', (d: Buffer) => { err += d.toString() })
    p.on('error', reject)
    p.on('close', (code, signal) => {
      if (out.includes('done\n') && code === 0) resolve(true)
      else if (signal === 'SIGKILL') resolve(false)
      else reject(new Error(`copier ended with ${code ?? signal}: ${err}`))
    })
  })
}
