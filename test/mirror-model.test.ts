import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { inspectLog } from './helpers'

const SUBS = ['', 'a', 'b', 'a/c'] as const
const prefix = (sub: string): string => sub === '' ? '' : sub.split('/').map((n) => `!${n}!`).join('')

const key = fc.stringMatching(/^[a-e]{1,3}$/)
const sub = fc.constantFrom(...SUBS)
const command = fc.oneof(
  fc.record({ kind: fc.constant('put' as const), sub, key, value: fc.string({ maxLength: 5 }), concurrent: fc.boolean() }),
  fc.record({ kind: fc.constant('del' as const), sub, key, concurrent: fc.boolean() }),
  fc.record({ kind: fc.constant('batch' as const), ops: fc.array(fc.record({ sub, key, value: fc.option(fc.string({ maxLength: 5 }), { nil: undefined }) }), { maxLength: 6 }), concurrent: fc.boolean() }),
  fc.record({ kind: fc.constant('clear' as const), sub, gte: fc.option(key, { nil: undefined }), lt: fc.option(key, { nil: undefined }), reverse: fc.boolean(), limit: fc.option(fc.nat(4), { nil: undefined }) }),
  fc.record({ kind: fc.constant('check' as const), sub }),
  fc.record({ kind: fc.constant('reopen' as const) })
)

describe('MirrorLevel against a Map model', () => {
  it('agrees with the model and its log names every changed key, under random ops (fast-check)', async () => {
    await fc.assert(fc.asyncProperty(fc.array(command, { maxLength: 50 }), async (commands) => {
      const inner = new MemoryLevel()
      let db = new MirrorLevel(inner)
      const model = new Map<string, string>()
      const changed = new Set<string>()
      // Sublevels are made once per open and awaited: a sublevel that is still opening defers its
      // writes (abstract-level's deferred open), so call order would not be commit order.
      let subs = new Map<string, any>()
      const makeSubs = async () => {
        subs = new Map(SUBS.map((name) => [name, name === '' ? db : name.split('/').reduce((d: any, n) => d.sublevel(n), db)]))
        await Promise.all([...subs.values()].map((s) => s.open()))
      }
      await makeSubs()
      const level = (name: string) => subs.get(name)
      let inflight: Array<Promise<unknown>> = []
      const settle = async () => { await Promise.all(inflight); inflight = [] }
      const modelRange = (name: string, gte?: string, lt?: string) => [...model.keys()]
        .filter((k) => {
          const p = prefix(name)
          if (!k.startsWith(p)) return false
          // keys of nested sublevels fall in the parent's range, as in abstract-level
          const local = k.slice(p.length)
          return (gte === undefined || local >= gte) && (lt === undefined || local < lt)
        })
        .sort()

      for (const c of commands) {
        if (c.kind === 'put' || c.kind === 'del') {
          const full = prefix(c.sub) + c.key
          changed.add(full)
          if (c.kind === 'put') model.set(full, c.value)
          else model.delete(full)
          const p = c.kind === 'put' ? level(c.sub).put(c.key, c.value) : level(c.sub).del(c.key)
          if (c.concurrent) inflight.push(p)
          else await p
        } else if (c.kind === 'batch') {
          for (const o of c.ops) {
            const full = prefix(o.sub) + o.key
            changed.add(full)
            if (o.value !== undefined) model.set(full, o.value)
            else model.delete(full)
          }
          const p = db.batch(c.ops.map((o) => o.value !== undefined
            ? { type: 'put' as const, sublevel: o.sub === '' ? undefined : level(o.sub), key: o.key, value: o.value }
            : { type: 'del' as const, sublevel: o.sub === '' ? undefined : level(o.sub), key: o.key }) as never)
          if (c.concurrent) inflight.push(p)
          else await p
        } else if (c.kind === 'clear') {
          await settle()
          const range: Record<string, unknown> = { reverse: c.reverse }
          if (c.gte !== undefined) range.gte = c.gte
          if (c.lt !== undefined) range.lt = c.lt
          if (c.limit !== undefined) range.limit = c.limit
          let victims = c.sub === ''
            ? [...model.keys()].filter((k) => (c.gte === undefined || k >= c.gte) && (c.lt === undefined || k < c.lt)).sort()
            : modelRange(c.sub, c.gte, c.lt)
          if (c.reverse) victims.reverse()
          if (c.limit !== undefined) victims = victims.slice(0, c.limit)
          for (const k of victims) { model.delete(k); changed.add(k) }
          await level(c.sub).clear(range)
        } else if (c.kind === 'check') {
          await settle()
          if (c.sub === '') {
            expect(await db.iterator().all()).toEqual([...model.entries()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
          } else {
            const p = prefix(c.sub)
            const expected = modelRange(c.sub).map((k) => [k.slice(p.length), model.get(k)]).filter(([k]) => !k!.startsWith('!'))
            const actual = await level(c.sub).iterator().all()
            expect(actual.filter(([k]: [string]) => !k.startsWith('!'))).toEqual(expected)
          }
        } else {
          await settle()
          await db.close()
          db = new MirrorLevel(inner)
          await db.open()
          await makeSubs()
        }
      }
      await settle()
      expect(await db.iterator().all()).toEqual([...model.entries()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
      const { head, records } = await inspectLog(inner as never)
      expect(records.at(-1)?.to ?? 0).toBe(head.seq)
      const named = new Set(records.flatMap((r) => r.keys!.map(String)))
      for (const k of changed) expect(named.has(k)).toBe(true)
      await db.close()
    }), { numRuns: 150 })
  })
})
