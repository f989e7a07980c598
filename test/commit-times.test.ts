import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { CommitTimes } from '../lib/replication/commit-times'

// The plain model: every commit, none forgotten but those `forgetUpTo` lets go.
class Model {
  commits: Array<[number, number, number]> = []
  add (seq: number, time: number, bytes: number): void {
    this.commits.push([seq, time, bytes])
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

const step = fc.oneof(
  fc.record({ t: fc.constant('add' as const), n: fc.integer({ min: 1, max: 3000 }), gap: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ t: fc.constant('forget' as const), back: fc.nat({ max: 5000 }) }),
  fc.record({ t: fc.constant('lag' as const), back: fc.nat({ max: 6000 }) })
)

describe('commit times', () => {
  it('give the exact lag while they hold no more than their bound, and a lower bound on the age past it', () => {
    fc.assert(fc.property(fc.integer({ min: 8, max: 4000 }), fc.array(step, { maxLength: 40 }), (max, steps) => {
      const times = new CommitTimes(max)
      const model = new Model()
      let seq = 0
      let bytes = 0
      let thinned = false
      // Replicas are never behind what was forgotten: lags are asked for at or after it.
      let floor = -Infinity
      for (const s of steps) {
        if (s.t === 'add') {
          for (let i = 0; i < s.n; i++) {
            seq += s.gap
            bytes += 10
            times.add(seq, seq * 2, bytes)
            model.add(seq, seq * 2, bytes)
            thinned ||= model.commits.length > max
          }
        } else if (s.t === 'forget') {
          times.forgetUpTo(seq - s.back)
          model.forgetUpTo(seq - s.back)
          floor = Math.max(floor, seq - s.back)
        } else if (seq - s.back >= floor) {
          const got = times.lag(seq - s.back, seq * 2 + 7, bytes)
          const exact = model.lag(seq - s.back, seq * 2 + 7, bytes)
          if (thinned) expect(got.ms).toBeLessThanOrEqual(exact.ms)
          else expect(got).toEqual(exact)
        }
        expect(times.size).toBeLessThanOrEqual(max)
        if (!thinned) expect(times.size).toBe(model.commits.length)
      }
    }), { numRuns: 200 })
  })

  it('keep the lag of a replica away for many times their bound exact', () => {
    const times = new CommitTimes(1000)
    const model = new Model()
    for (let seq = 1; seq <= 100; seq++) { times.add(seq, seq * 3, seq * 7); model.add(seq, seq * 3, seq * 7) }
    times.forgetUpTo(50)
    model.forgetUpTo(50)
    for (let seq = 101; seq <= 50_000; seq++) {
      times.add(seq, seq * 3, seq * 7)
      model.add(seq, seq * 3, seq * 7)
      if (seq % 997 === 0) expect(times.lag(50, seq * 3, seq * 7)).toEqual(model.lag(50, seq * 3, seq * 7))
    }
    expect(times.size).toBeLessThanOrEqual(1000)
    expect(times.lag(50, 200_000, 350_000)).toEqual({ ms: 200_000 - 51 * 3, bytes: 350_000 - 50 * 7 })
  })
})
