import { afterAll, describe, expect, it } from 'vitest'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { decodeBytes } from '../lib/replica/discarded'
import { dirData, tempDir } from './helpers'
import { startPrimary } from './process-helpers'
import { exited, runCli, startServer } from './tcp-helpers'

const KEY = 'failover-test-key-0123456789abcdef'

const data = dirData

async function head (dir: string): Promise<number> {
  const { code, stdout, stderr } = await runCli(['status', dir, '--json'])
  expect(code, stderr).toBe(0)
  return JSON.parse(stdout).primary.head
}

describe('failover end to end (real processes, SIGKILL)', () => {
  const tmp = tempDir()
  afterAll(() => tmp.cleanup())

  it('kill the primary mid-stream, promote the server\'s replica, demote and rejoin the old primary: everything ends equal, the lost writes saved exactly, no full copy', async () => {
    const keyFile = join(tmp.dir, 'key')
    writeFileSync(keyFile, KEY)
    const serverDir = join(tmp.dir, 'srv')
    const oldDir = join(tmp.dir, 'old-primary')
    const secondDir = join(tmp.dir, 'second-replica')
    const lost = join(tmp.dir, 'lost-writes.jsonl')

    // 1. A primary process mirrors async to `serve`, and is killed mid-stream.
    const server = await startServer(['--dir', serverDir, '--key-file', keyFile, '--port', '0', '--quiet'])
    const old = startPrimary({ dir: oldDir, replicas: [{ kind: 'tcp', port: server.port, resource: 'app', key: KEY }], start: 1 })
    // Mid-stream: the replica holds some of the writes (on a loaded machine the first batch can
    // come after the 400th write: killed before it, the server held nothing to promote).
    await old.saw(/"event":"batch"/)
    await old.saw('wrote 400')
    old.child.kill('SIGKILL')
    await old.done
    server.child.kill('SIGTERM')
    expect((await exited(server.child)).code).toBe(0)

    // The old primary's machine comes back and takes writes before anyone notices (they, and
    // whatever the kill left unshipped, never reach the replica).
    const oldHead = await head(oldDir)
    const alone = startPrimary({ dir: oldDir, replicas: [], start: oldHead + 1, count: 30 })
    await alone.done

    // 2. The server's replica becomes the primary.
    const appDir = join(serverDir, 'app')
    const promoted = await runCli(['promote', appDir])
    expect(promoted.code, promoted.stderr).toBe(0)
    const fork = await head(appDir)
    const oldEnd = await head(oldDir)
    expect(oldEnd).toBe(oldHead + 30)
    expect(fork).toBeLessThanOrEqual(oldHead)

    // 3. A new primary process on it, with a replica of its own, takes writes.
    const fresh = startPrimary({ dir: appDir, replicas: [{ kind: 'level', dir: secondDir, name: 'second' }], start: 100_000, count: 200 })
    await fresh.done

    // 4. The old primary is demoted, its lost writes saved, and attached as a replica of the new one.
    const demoted = await runCli(['demote', oldDir, '--save-discarded', lost])
    expect(demoted.code, demoted.stderr).toBe(0)
    const again = startPrimary({ dir: appDir, replicas: [{ kind: 'level', dir: secondDir, name: 'second' }, { kind: 'level', dir: oldDir, name: 'old' }], start: 200_000, count: 50 })
    await again.done

    // Every store equals the new primary.
    const primary = await data(appDir)
    expect(await data(oldDir)).toEqual(primary)
    expect(await data(secondDir)).toEqual(primary)
    // The rejoin was no full copy: one batch from the fork with the keys that differ.
    const rejoin = again.events.filter((e) => e.event === 'batch' && e.name === 'old')
    expect(rejoin.length).toBeGreaterThan(0)
    expect(rejoin.every((e) => e.full === false)).toBe(true)
    expect(rejoin[0].from).toBe(fork)
    // The saved file holds exactly the old primary's writes after the fork: write s put k<s % 50> = v<s>.
    const expected = new Map<string, string>()
    for (let s = fork + 1; s <= oldEnd; s++) expected.set(`k${s % 50}`, `v${s}`)
    const lines = readFileSync(lost, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l))
    expect(lines[0]).toMatchObject({ 'mirror-level': 'discarded writes', fork, exact: true })
    const saved = new Map(lines.slice(1).map((l) => [decodeBytes(l.key).toString(), decodeBytes(l.value).toString()]))
    expect(saved).toEqual(expected)
  })
})
