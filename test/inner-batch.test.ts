import { describe, expect, it } from 'vitest'
import { MemoryLevel } from 'memory-level'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { inspectLog, tempDir, userData } from './helpers'

// The pipeline writes its batches straight to the inner db's `_batch` where abstract-level's
// public layer would change nothing; wherever that layer does something, it must still run.
describe('inner batches', () => {
  const write = async (inner: ConstructorParameters<typeof MirrorLevel>[0]): Promise<void> => {
    const db = new MirrorLevel(inner)
    await db.open()
    await db.put('a', '1')
    await db.batch([{ type: 'put', key: 'b', value: '2' }, { type: 'del', key: 'a' }])
    await db.close()
  }

  it('run the inner db\'s prewrite hook on every write, log records included', async () => {
    const inner = new MemoryLevel()
    const seen: string[] = []
    inner.hooks.prewrite.add((op: { type: string, key: unknown }) => { seen.push(`${op.type} ${Buffer.from(op.key as Buffer).toString('latin1')}`) })
    await write(inner)
    expect(seen.filter((s) => !s.includes('mirror-level/'))).toEqual(['put a', 'put b', 'del a'])
    expect(seen.some((s) => s.includes('mirror-level/log'))).toBe(true)
  })

  it('emit the inner db\'s write events', async () => {
    const inner = new MemoryLevel()
    const events: string[][] = []
    await inner.open()
    inner.on('write', (ops: Array<{ key: Buffer }>) => events.push(ops.map((op) => Buffer.from(op.key).toString('latin1'))))
    await write(inner)
    // Each user write with its log record (the first with its history entry too).
    const user = events.filter((keys) => keys.some((k) => !k.includes('mirror-level/')))
    expect(user.map((keys) => keys.filter((k) => !k.includes('mirror-level/')))).toEqual([['a'], ['b', 'a']])
    expect(user.every((keys) => keys.some((k) => k.includes('mirror-level/log')))).toBe(true)
  })

  it('add a sublevel\'s prefix, so the mirror inside one sublevel leaves its siblings alone', async () => {
    const { dir, cleanup } = tempDir()
    const root = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    await root.open()
    await root.put(Buffer.from('a'), Buffer.from('outside'))
    const sub = root.sublevel<Buffer, Buffer>('mirrored', { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    await write(sub)
    if (root.status !== 'open') await root.open()
    if (sub.status !== 'open') await sub.open()
    expect(await userData(sub)).toEqual(new Map([[Buffer.from('b').toString('hex'), Buffer.from('2').toString('hex')]]))
    expect((await inspectLog(sub)).head.seq).toBe(2)
    expect((await root.get(Buffer.from('a')))?.toString()).toBe('outside')
    await root.close()
    cleanup()
  })
})
