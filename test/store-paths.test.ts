import { describe, expect, it } from 'vitest'
import { existsSync, writeFileSync } from 'node:fs'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { promoteStore } from '../lib/replica/promote'
import { demoteStore } from '../lib/replica/demote'
import { recoverStore } from '../lib/replica/recover'
import { deciding, CANNOT_CURE } from '../lib/replication/replica-options'
import type { ReplicaAdapter } from '../lib/adapter'
import { tempDir } from './helpers'
import { MemoryLevel } from 'memory-level'
import { LevelReplica } from '../adapters/level'
import { MirrorServer } from '../lib/net/server'
import { runCli } from './tcp-helpers'

// Defects a hostile trial found (2026-12-04): a misspelt path given to promote, demote or recover
// from code was left behind as a new empty LevelDB; a replica directory the process may not write
// was retried for ever as a blip; a file where demote's file was to go gave a raw ENOTDIR.
describe('store paths', () => {
  it('promote, demote and recover refuse a store that does not exist, and create nothing there', async () => {
    const { dir, cleanup } = tempDir()
    try {
      for (const [name, run] of [
        ['promote()', (db: ClassicLevel) => promoteStore(db as never)],
        ['demote()', (db: ClassicLevel) => demoteStore(db as never, { discard: true })],
        ['recover()', (db: ClassicLevel) => recoverStore(db as never)]
      ] as const) {
        const path = `${dir}/misspelt-${name.slice(0, -2)}`
        await expect(run(new ClassicLevel(path))).rejects.toMatchObject({ code: 'MIRROR_INVALID_OPTION', message: expect.stringContaining(`${path} does not exist`) })
        await new Promise((resolve) => setTimeout(resolve, 50))
        expect(existsSync(path), name).toBe(false)
      }
      // An existing store is still worked on (a primary: nothing for recover to do).
      const primary = new MirrorLevel(new ClassicLevel(`${dir}/p`))
      await primary.put('k', 'v')
      await primary.close()
      expect((await recoverStore(new ClassicLevel(`${dir}/p`) as never)).action).toBe('none')
    } finally {
      cleanup()
    }
  })

  it('demote refuses a file where the directory of its saved writes should be, and changes nothing', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const primary = new MirrorLevel(new ClassicLevel(`${dir}/p`))
      await primary.put('k', 'v')
      await primary.close()
      writeFileSync(`${dir}/afile`, 'x')
      await expect(demoteStore(new ClassicLevel(`${dir}/p`) as never, { saveDiscarded: `${dir}/afile/lost.jsonl` }))
        .rejects.toMatchObject({ code: 'MIRROR_INVALID_OPTION', message: expect.stringMatching(/afile is not a directory/) })
      // Still a primary with its data.
      const again = new MirrorLevel(new ClassicLevel(`${dir}/p`))
      expect(await again.get('k')).toBe('v')
      await again.close()
    } finally {
      cleanup()
    }
  })

  it('a replica directory that may not be written is failed, not retried as a blip', async () => {
    // classic-level's own error for such a directory, as it arrives (the primary's user lacked
    // write permission on an existing replica directory).
    const denied = Object.assign(new Error('Database failed to open'), {
      code: 'LEVEL_DATABASE_NOT_OPEN',
      cause: Object.assign(new Error('IO error: /backup/replica/LOCK: Permission denied'), { code: 'LEVEL_IO_ERROR' })
    })
    expect(deciding(denied)).toBe('EACCES')
    expect(CANNOT_CURE.has(deciding(denied))).toBe(true)
    const readOnly = Object.assign(new Error('IO error: /mnt/r/LOCK: Read-only file system'), { code: 'LEVEL_IO_ERROR' })
    expect(deciding(readOnly)).toBe('EROFS')
    // Other I/O errors stay what they were: retried.
    const other = Object.assign(new Error('IO error: /backup/replica/000012.log: No space left on device'), { code: 'LEVEL_IO_ERROR' })
    expect(deciding(other)).toBe('LEVEL_IO_ERROR')
    expect(CANNOT_CURE.has(deciding(other))).toBe(false)

    // And through a replicator: the state is failed (someone has to act), not down.
    let hellos = 0
    const adapter: ReplicaAdapter = {
      name: 'denied',
      options: { retryMinDelay: 5, retryMaxDelay: 10 },
      hello: async () => { hellos++; throw denied },
      apply: async () => { throw new Error('never') },
      close: async () => {}
    }
    const { dir, cleanup } = tempDir()
    try {
      const db = new MirrorLevel(new ClassicLevel(`${dir}/p`), { replicas: [adapter] })
      await db.put('k', 'v')
      const until = Date.now() + 5000
      while (db.mirrorStatus().replicas[0].state !== 'failed' && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10))
      expect(db.mirrorStatus().replicas[0].state).toBe('failed')
      expect(hellos).toBeGreaterThan(0)
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect(db.mirrorStatus().replicas[0].state).toBe('failed')
      await db.close()
    } finally {
      cleanup()
    }
  })

  it('a server whose port is in use creates no --dir; the same adapter twice is named as such; verify names the first missing path', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const first = new MirrorServer({ dir: `${dir}/a`, key: 'a-key-for-the-port-test-0123456789', port: 0 })
      const { port } = await first.listen()
      const second = new MirrorServer({ dir: `${dir}/b`, key: 'a-key-for-the-port-test-0123456789', port })
      await expect(second.listen()).rejects.toMatchObject({ code: 'MIRROR_INVALID_OPTION', message: expect.stringMatching(/in use/) })
      expect(existsSync(`${dir}/b`)).toBe(false)
      expect(existsSync(`${dir}/a`)).toBe(true)
      await first.close()

      const adapter = new LevelReplica(new MemoryLevel())
      expect(() => new MirrorLevel(new MemoryLevel(), { replicas: [adapter, adapter] }))
        .toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION', message: expect.stringMatching(/replicas\[0\] and replicas\[1\] are the same adapter/) }))

      const verify = await runCli(['verify', `${dir}/missing-1`, `${dir}/missing-2`])
      expect(verify.code).toBe(2)
      expect(verify.stderr).toContain(`${dir}/missing-1 does not exist`)
    } finally {
      cleanup()
    }
  })
})
