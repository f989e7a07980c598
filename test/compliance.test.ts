import { describe, expect, it } from 'vitest'
import { fileURLToPath } from 'node:url'
import { runTs } from './helpers'

const suite = fileURLToPath(new URL('./compliance/suite.ts', import.meta.url))

// abstract-level's own suite (root and sublevel passes) against MirrorLevel, in a child process
// because it is written for tape.
describe('abstract-level compliance suite', () => {
  for (const kind of ['memory', 'classic']) {
    it(`passes every test over ${kind}-level`, async () => {
      const { code, stdout, stderr } = await runTs(suite, [kind])
      const failures = stdout.split('\n').filter((l) => l.startsWith('not ok'))
      expect(failures, stderr).toEqual([])
      const pass = Number(/^# pass\s+(\d+)/m.exec(stdout)?.[1] ?? 0)
      const total = Number(/^# tests\s+(\d+)/m.exec(stdout)?.[1] ?? -1)
      expect(code).toBe(0)
      expect(pass).toBe(total)
      // The suite runs thousands of assertions; a run that stops early is a failure too.
      expect(pass).toBeGreaterThan(5000)
    })
  }
})
