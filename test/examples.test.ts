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

  it('failover.ts runs the failover story: promote, demote with saved writes, rejoin and restore without full copies', async () => {
    const { code, stdout, stderr } = await runTs(fileURLToPath(new URL('../examples/failover.ts', import.meta.url)), [], { timeoutMs: 60_000 })
    expect(code, stderr).toBe(0)
    expect(stdout).toMatch(/rejoin batch to laptop: seqs \(100, 101\], 3 keys, no full copy/)
    expect(stdout).toMatch(/order:101 = placed\n\s+order:7 = cancelled/)
    expect(stdout).toMatch(/order:7 = placed, order:102 = placed in the office/)
    expect(stdout).toMatch(/restored 500 entries .* verified/)
    expect(stdout).toMatch(/the server's replica continues: seqs \(1, 2\], no full copy/)
    expect(stdout).not.toMatch(/a full copy\b/)
  })
})
