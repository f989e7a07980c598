import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { MirrorServer } from '../lib/net/server'
import { TcpReplica } from '../adapters/tcp'
import { restore } from '../lib/recovery/restore'
import { listResources } from '../lib/net/remote-status'
import { tempDir } from './helpers'
import { until } from './replication-helpers'
import { runCli } from './tcp-helpers'

const ADMIN = 'admin-key-0123456789abcdef0123456789'
const APP_WRITER = 'app-writer-key-0123456789abcdef01'
const APP_READER = 'app-reader-key-0123456789abcdef01'
const KEYS = `# key                          resources  rights
${ADMIN}                             *          read,write
${APP_WRITER}                        app        write
${APP_READER}                        app,other  read
`

describe('who may read and write what', () => {
  const tmp = tempDir()
  let server: MirrorServer
  let port: number
  beforeAll(async () => {
    server = new MirrorServer({ dir: join(tmp.dir, 'srv'), keys: KEYS, port: 0 })
    port = (await server.listen()).port
    for (const resource of ['app', 'other']) {
      const db = new MirrorLevel(new MemoryLevel(), { replicas: [new TcpReplica({ port, resource, key: ADMIN })] })
      await db.put('k', resource)
      await db.replicated()
      await db.close()
    }
  })
  afterAll(async () => {
    await server.close()
    tmp.cleanup()
  })

  async function writeState (resource: string, key: string): Promise<{ state: string, errorCode: string | null }> {
    const db = new MirrorLevel(new MemoryLevel(), { replicas: [new TcpReplica({ port, resource, key, retryMaxDelay: 60_000 })] })
    await db.put('x', 'y')
    await until(() => ['idle', 'failed', 'refused'].includes(db.mirrorStatus().replicas[0].state))
    const { state, errorCode } = db.mirrorStatus().replicas[0]
    await db.close()
    return { state, errorCode }
  }

  it('a key limited to one resource can neither write nor read another', async () => {
    expect(await writeState('other', APP_WRITER)).toMatchObject({ state: 'failed', errorCode: 'MIRROR_FORBIDDEN' })
    await expect(restore({ from: `tcp://127.0.0.1:${port}/other`, to: join(tmp.dir, 't1'), key: APP_WRITER })).rejects.toMatchObject({ code: 'MIRROR_FORBIDDEN' })
    // ... and a write-only key cannot read its own resource, a read-only one cannot write it
    await expect(restore({ from: `tcp://127.0.0.1:${port}/app`, to: join(tmp.dir, 't2'), key: APP_WRITER })).rejects.toMatchObject({ code: 'MIRROR_FORBIDDEN' })
    expect(await writeState('app', APP_READER)).toMatchObject({ state: 'failed', errorCode: 'MIRROR_FORBIDDEN' })
    const restored = await restore({ from: `tcp://127.0.0.1:${port}/other`, to: join(tmp.dir, 't3'), key: APP_READER })
    expect(restored.entries).toBe(1)
    // a resource that does not exist is not created by a reader
    await expect(restore({ from: `tcp://127.0.0.1:${port}/nosuch`, to: join(tmp.dir, 't4'), key: ADMIN })).rejects.toMatchObject({ code: 'MIRROR_WRONG_ROLE' })
    const { existsSync } = await import('node:fs')
    expect(existsSync(join(tmp.dir, 'srv', 'nosuch'))).toBe(false)
  })

  it('a listing shows only the resources the key may see, with what it may do', async () => {
    const all = await listResources({ port, key: ADMIN })
    expect(all.map((r) => r.name)).toEqual(['app', 'other'])
    const mine = await listResources({ port, key: APP_WRITER })
    expect(mine).toMatchObject([{ name: 'app', rights: ['write'], role: 'replica', consistent: true, primary: null }])
    expect(mine[0].watermark).toBeGreaterThan(0)
    expect(mine[0].lastBatchAt).toBeGreaterThan(0)
    await expect(listResources({ port, key: 'not-a-key-of-this-server-at-all' })).rejects.toMatchObject({ code: 'MIRROR_AUTH' })
  })

  it('status --remote on the command line', async () => {
    const keyFile = join(tmp.dir, 'reader.key')
    writeFileSync(keyFile, APP_READER)
    const { code, stdout, stderr } = await runCli(['status', '--remote', `127.0.0.1:${port}`, '--key-file', keyFile])
    expect(code, stderr).toBe(0)
    expect(stdout).toMatch(/^app \[read\]: replica, watermark \d+, generation \w+, consistent; no primary connected; last batch /m)
    expect(stdout).toMatch(/^other \[read\]/m)
    const json = JSON.parse((await runCli(['status', '--remote', `127.0.0.1:${port}`, '--key-file', keyFile, '--json'])).stdout)
    expect(json.map((r: { name: string }) => r.name)).toEqual(['app', 'other'])
  })

  it('a keys file with a mistake is refused at start, naming the line', () => {
    expect(() => new MirrorServer({ dir: tmp.dir, keys: `${ADMIN} app readwrite\n` })).toThrow(/line 1: rights/)
    expect(() => new MirrorServer({ dir: tmp.dir, keys: '# nothing\n' })).toThrow(/no key/)
    expect(() => new MirrorServer({ dir: tmp.dir, keys: `${APP_READER} app read\n${APP_READER} photos write\n` })).toThrow(/line 2: the same key as keys file line 1/)
    expect(() => new MirrorServer({ dir: tmp.dir, keys: 'short app read\n' })).toThrow(/line 1: .*at least 16/)
    expect(() => new MirrorServer({ dir: tmp.dir, keys: KEYS, key: ADMIN })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
  })
})
