import { describe, expect, it } from 'vitest'
import { readAhead } from '../lib/replication/read-ahead'

const tick = (ms = 5): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// A source that logs when each read starts and ends, and whether it was closed.
function source (n: number, failAt = -1): { gen: AsyncGenerator<number>, log: string[] } {
  const log: string[] = []
  const gen = (async function * () {
    try {
      for (let i = 0; i < n; i++) {
        log.push(`read ${i}`)
        await tick()
        if (i === failAt) throw new Error(`read ${i} failed`)
        log.push(`got ${i}`)
        yield i
      }
    } finally {
      log.push('closed')
    }
  })()
  return { gen, log }
}

describe('readAhead', () => {
  it('yields every item in order, reading the next while the caller works on this one', async () => {
    const { gen, log } = source(4)
    const seen: number[] = []
    for await (const item of readAhead(gen)) {
      log.push(`use ${item}`)
      seen.push(item)
      await tick(20)
    }
    expect(seen).toEqual([0, 1, 2, 3])
    // Item 1 is read while item 0 is in use, and item 2 only once item 1 is handed out.
    const at = (entry: string): number => log.indexOf(entry)
    expect(at('read 1')).toBeLessThan(at('use 0'))
    expect(at('got 1')).toBeGreaterThan(at('use 0'))
    expect(at('got 1')).toBeLessThan(at('read 2'))
    expect(at('read 2')).toBeLessThan(at('use 1'))
    expect(log).toContain('closed')
  })

  it('reads one item ahead, never two', async () => {
    const { gen, log } = source(10)
    for await (const item of readAhead(gen)) {
      await tick(15)
      const reads = log.filter((l) => l.startsWith('read ')).length
      expect(reads).toBeLessThanOrEqual(item + 2)
    }
  })

  it('waits for the read in flight and closes the source when the caller stops early', async () => {
    const { gen, log } = source(10)
    for await (const item of readAhead(gen)) {
      if (item === 1) break
    }
    // By the time the loop has left, the read ahead is over and the source is closed.
    expect(log.at(-1)).toBe('closed')
    expect(log.filter((l) => l.startsWith('read ')).length).toBe(3)
  })

  it('closes the source when the caller throws', async () => {
    const { gen, log } = source(10)
    await expect((async () => {
      for await (const item of readAhead(gen)) if (item === 2) throw new Error('apply failed')
    })()).rejects.toThrow('apply failed')
    expect(log.at(-1)).toBe('closed')
  })

  it("gives the caller the source's error at the item that failed, and none unhandled while it works", async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (err: unknown): void => { unhandled.push(err) }
    process.on('unhandledRejection', onUnhandled)
    try {
      const { gen } = source(10, 2)
      const seen: number[] = []
      await expect((async () => {
        for await (const item of readAhead(gen)) {
          seen.push(item)
          // The read of item 2 fails while item 1 is still in use.
          await tick(40)
        }
      })()).rejects.toThrow('read 2 failed')
      expect(seen).toEqual([0, 1])
      await tick(20)
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })
})
