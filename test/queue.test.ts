import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { Queue } from '../lib/queue'

describe('queue', () => {
  it('gives back what was pushed, in order, through any mix of pushes and shifts', () => {
    const step = fc.oneof(fc.record({ push: fc.integer({ min: 1, max: 3000 }) }), fc.record({ shift: fc.integer({ min: 1, max: 3000 }) }))
    fc.assert(fc.property(fc.array(step, { maxLength: 30 }), (steps) => {
      const queue = new Queue<number>()
      const model: number[] = []
      let next = 0
      for (const s of steps) {
        if ('push' in s) {
          for (let i = 0; i < s.push; i++) { queue.push(next); model.push(next++) }
        } else {
          for (let i = 0; i < s.shift; i++) expect(queue.shift()).toBe(model.shift())
        }
        expect(queue.length).toBe(model.length)
        expect(queue.peek()).toBe(model[0])
      }
    }), { numRuns: 200 })
  })
})
