import { describe, expect, it } from 'vitest'
import { ClassicLevel } from 'classic-level'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { tempDir } from './helpers'

// A caller may reuse its Buffer as soon as put/del/batch returns, as with classic-level itself:
// the bytes are captured when the write is made, not when its group commits.
describe('writes capture their keys and values when they are made', () => {
  for (const kind of ['memory-level', 'classic-level'] as const) {
    it(`un-awaited puts, dels and batches from one reused scratch Buffer all land (${kind})`, async () => {
      const { dir, cleanup } = tempDir()
      try {
        const inner = kind === 'memory-level' ? new MemoryLevel() : new ClassicLevel(`${dir}/db`)
        const db = new MirrorLevel<Buffer, Buffer>(inner, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
        await db.open()
        await db.put(Buffer.from('gone-1'), Buffer.from('x'))
        const key = Buffer.alloc(5)
        const value = Buffer.alloc(1)
        const pending: Array<Promise<unknown>> = []
        for (let i = 0; i < 3; i++) {
          key.write(`key-${i}`)
          value.write('ABC'[i])
          pending.push(db.put(key, value))
        }
        key.write('gone-')
        const del = Buffer.from('gone-1')
        pending.push(db.del(del))
        del.write('key-0')
        key.write('bat-0')
        value.write('D')
        pending.push(db.batch([{ type: 'put', key, value }]))
        key.write('bat-1')
        value.write('E')
        const chained = db.batch().put(key, value)
        key.write('bat-2')
        pending.push(chained.write())
        value.fill(0)
        await Promise.all(pending)
        const all = await db.iterator().all()
        expect(all.map(([k, v]) => `${k.toString()}=${v.toString()}`)).toEqual(['bat-0=D', 'bat-1=E', 'key-0=A', 'key-1=B', 'key-2=C'])
        await db.close()
      } finally {
        cleanup()
      }
    })
  }
})
