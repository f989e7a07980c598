import { describe, expect, it } from 'vitest'
import { fileURLToPath } from 'node:url'
import { runTs } from './helpers'

// The examples are documentation: they must keep running.
describe('examples', () => {
  it('remote-replica.ts runs a server and a fullsync primary on loopback', async () => {
    const { code, stdout, stderr } = await runTs(fileURLToPath(new URL('../examples/remote-replica.ts', import.meta.url)), [], { timeoutMs: 60_000 })
    expect(code, stderr).toBe(0)
    expect(stdout).toMatch(/200 fullsync writes/)
    expect(stdout).toMatch(/replica holds 200 orders/)
  })
})
