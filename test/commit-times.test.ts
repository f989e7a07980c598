import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { CommitTimes } from '../lib/replication/commit-times'

// The plain model: every commit as a tuple, the oldest cut off the front.
class Model {
  commits: Array<[number, number, number]> = []
  constructor (readonly max: number) {}
  add (seq: number, time: number, bytes: number): void {
    this.commits.push([seq, time, bytes])
    if (this.commits.length > this.max) this.commits.splice(0, this.commits.length - this.max)
  }

  forgetUpTo (seq: number): void {
    let drop = 0
    while (drop < this.commits.length && this.commits[drop][0] <= seq) drop++
    if (drop > 1) this.commits.splice(0, drop - 1)
  }

  lag (w: number, now: number, total: number): { ms: number, bytes: number } {
    const first = this.commits.findIndex(([seq]) => seq > w)
    if (first === -1) return { ms: 0, bytes: 0 }
    return { ms: now - this.commits[first][1], bytes: total - this.commits[first > 0 ? first - 1 : first][2] }
  }
}

describe('commit times', () => {
  it('give the lag the plain list of commits gives, through adds, caps and forgetting', () => {
    const step = fc.oneof(
      fc.record({ t: fc.constant('add' as const), n: fc.integer({ min: 1, max: 3000 }), gap: fc.integer({ min: 1, max: 3 }) }),
      fc.record({ t: fc.constant('forget' as const), back: fc.nat({ max: 5000 }) }),
      fc.record({ t: fc.constant('lag' as const), back: fc.nat({ max: 6000 }) })
    )
    fc.assert(fc.property(fc.integer({ min: 1, max: 4000 }), fc.array(step, { maxLength: 40 }), (max, steps) => {
      const times = new CommitTimes(max)
      const model = new Model(max)
      let seq = 0
      let bytes = 0
      for (const s of steps) {
        if (s.t === 'add') {
          for (let i = 0; i < s.n; i++) {
            seq += s.gap
            bytes += 10
            times.add(seq, seq * 2, bytes)
            model.add(seq, seq * 2, bytes)
          }
        } else if (s.t === 'forget') {
          times.forgetUpTo(seq - s.back)
          model.forgetUpTo(seq - s.back)
        } else {
          expect(times.lag(seq - s.back, seq * 2 + 7, bytes)).toEqual(model.lag(seq - s.back, seq * 2 + 7, bytes))
        }
        expect(times.size).toBe(model.commits.length)
      }
    }), { numRuns: 200 })
  })
})
