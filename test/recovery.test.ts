import { afterAll, describe, expect, it } from 'vitest'
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { ReplicaEngine } from '../lib/replica/engine'
import { metaKeys } from '../lib/keyspace'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { LevelReplica } from '../adapters/level'
import { promoteStore } from '../lib/replica/promote'
import { demoteStore } from '../lib/replica/demote'
import { decodeBytes, saveEveryKey } from '../lib/replica/discarded'
import { dirData, tempDir } from './helpers'
import { sleep, until } from './replication-helpers'
import { runCli } from './tcp-helpers'
import { MemoryLevel } from 'memory-level'

type Batch = { name: string, from: number, to: number, full: boolean, ops: number }

const data = dirData

function lines (file: string): Array<Record<string, unknown>> {
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l))
}

describe('positions prove their history', () => {
  const tmp = tempDir()
  afterAll(() => tmp.cleanup())

  it('a primary restored from an older copy of itself that writes past a replica is refused (MIRROR_DIVERGED)', async () => {
    const primary = join(tmp.dir, 'p')
    const replica = join(tmp.dir, 'r')
    const copy = join(tmp.dir, 'p-copy')
    const db = new MirrorLevel(new ClassicLevel(primary), { replicas: [new LevelReplica(new ClassicLevel(replica))] })
    for (let i = 0; i < 10; i++) await db.put(`k${i}`, 'first')
    await db.replicated()
    await db.close()
    cpSync(primary, copy, { recursive: true }) // an older copy of the primary, at seq 10
    await db.open()
    for (let i = 0; i < 10; i++) await db.put(`k${i}`, 'second') // the replica reaches seq 20
    await db.replicated()
    await db.close()
    const replicaBefore = await data(replica)

    // The copy comes back in place of the primary, writes past the replica's seq, meets the replica.
    const restored = new MirrorLevel(new ClassicLevel(copy), { replicas: [new LevelReplica(new ClassicLevel(replica), { retryMaxDelay: 100 })] })
    await restored.open()
    for (let i = 0; i < 15; i++) await restored.put(`other${i}`, 'x') // seq 25, another history
    // (Its first look may come while it is still behind the replica: refused as ahead of it. Once it
    // is past, the checksum of the history at the replica's seq is what refuses it.)
    await until(() => /another history at seq 20/.test(restored.mirrorStatus().replicas[0].error ?? ''))
    expect(restored.mirrorStatus().replicas[0]).toMatchObject({ state: 'refused', errorCode: 'MIRROR_DIVERGED' })
    await restored.close()
    expect(await data(replica)).toEqual(replicaBefore)
  })
})

describe('failover: promote the replica, demote the old primary, rejoin without a full copy', () => {
  const tmp = tempDir()
  afterAll(() => tmp.cleanup())

  it('saves exactly the old primary\'s writes after the fork, and every store ends equal to the new primary', async () => {
    const oldDir = join(tmp.dir, 'old')
    const replicaDir = join(tmp.dir, 'backup')
    const other = join(tmp.dir, 'second-backup')
    const lost = join(tmp.dir, 'lost-writes.jsonl')
    const old = new MirrorLevel(new ClassicLevel(oldDir), { replicas: [new LevelReplica(new ClassicLevel(replicaDir)), new LevelReplica(new ClassicLevel(other))] })
    for (let i = 0; i < 500; i++) await old.put(`k${i}`, `v${i}`)
    await old.replicated()
    const fork = old.head!.seq
    await old.close()
    // The old primary goes on alone (its replicas unreachable): these writes never reach anyone.
    const alone = new MirrorLevel(new ClassicLevel(oldDir))
    await alone.put('k1', 'lost-1')
    await alone.del('k2')
    await alone.put('only-old', 'lost-3')
    await alone.close()

    // The backup becomes the primary and takes writes of its own.
    const promoted = await promoteStore(new ClassicLevel(replicaDir) as never)
    expect(promoted.seq).toBe(fork)
    const batches: Batch[] = []
    const fresh = new MirrorLevel(new ClassicLevel(replicaDir), { replicas: [new LevelReplica(new ClassicLevel(other), { name: 'second' })] })
    fresh.on('replica-batch', (e) => batches.push(e))
    await fresh.open()
    await fresh.put('k1', 'new-1')
    await fresh.put('only-new', 'new-2')
    await fresh.replicated()
    // The old primary's other replica was at the fork: it continues incrementally.
    expect(batches.filter((b) => b.name === 'second').every((b) => !b.full)).toBe(true)

    // The old primary comes back: demoted, its lost writes saved, then rejoined.
    const demoted = await demoteStore(new ClassicLevel(oldDir) as never, { saveDiscarded: lost })
    expect(demoted.saved).toBeGreaterThanOrEqual(3)
    await fresh.close()
    batches.length = 0
    const again = new MirrorLevel(new ClassicLevel(replicaDir), {
      replicas: [new LevelReplica(new ClassicLevel(other), { name: 'second' }), new LevelReplica(new ClassicLevel(oldDir), { name: 'old' })]
    })
    again.on('replica-batch', (e) => batches.push(e))
    await again.open()
    await again.replicated()
    const rejoin = batches.filter((b) => b.name === 'old')
    expect(rejoin).toHaveLength(1)
    expect(rejoin[0]).toMatchObject({ full: false, from: fork })
    // the keys the new primary changed since the fork, and those the old one changed after it
    expect(rejoin[0].ops).toBe(4) // k1, only-new, k2, only-old
    await again.put('after', 'rejoin')
    await again.replicated()
    const primaryData = await (async () => { await again.close(); return await data(replicaDir) })()
    expect(await data(oldDir)).toEqual(primaryData)
    expect(await data(other)).toEqual(primaryData)

    const saved = lines(lost)
    expect(saved[0]).toMatchObject({ 'mirror-level': 'discarded writes', fork, exact: true })
    const writes = saved.slice(1).map((l) => [decodeBytes(l.key as never).toString(), l.value === null ? null : decodeBytes(l.value as never).toString()])
    expect(writes.sort()).toEqual([['k1', 'lost-1'], ['k2', null], ['only-old', 'lost-3']])
  })

  it('a demoted primary whose log was truncated past the fork (an open with only one of its replicas) gets a full copy, every key saved first: nothing stays behind, nothing is lost', async () => {
    const oldDir = join(tmp.dir, 'trunc-old')
    const backupDir = join(tmp.dir, 'trunc-backup')
    const secondDir = join(tmp.dir, 'trunc-second')
    const lost = join(tmp.dir, 'trunc-lost.jsonl')
    const old = new MirrorLevel(new ClassicLevel(oldDir), { replicas: [new LevelReplica(new ClassicLevel(backupDir), { name: 'backup' }), new LevelReplica(new ClassicLevel(secondDir), { name: 'second' })] })
    for (let i = 0; i < 50; i++) await old.put(`k${i}`, `v${i}`)
    await old.replicated()
    const fork = old.head!.seq
    await old.close()
    // The backup is out of reach; an open with only the second replica (as \`mirror-level verify
    // old second\` makes) lets the log go once the second has everything.
    const alone = new MirrorLevel(new ClassicLevel(oldDir), { replicas: [new LevelReplica(new ClassicLevel(secondDir), { name: 'second' })] })
    await alone.put('k1', 'lost-1')
    await alone.del('k2')
    await alone.put('only-old', 'lost-3')
    await alone.replicated()
    await until(() => alone.head!.logBytes === 0)
    await alone.close()

    await promoteStore(new ClassicLevel(backupDir) as never)
    const demoted = await demoteStore(new ClassicLevel(oldDir) as never, { saveDiscarded: lost })
    expect(demoted.text).toMatch(/names its writes after seq 53 only: if the new primary forked before that, the rejoin is a full copy/)
    const batches: Batch[] = []
    const fresh = new MirrorLevel(new ClassicLevel(backupDir), { replicas: [new LevelReplica(new ClassicLevel(oldDir), { name: 'old' })] })
    fresh.on('replica-batch', (e) => batches.push(e))
    await fresh.put('k3', 'new-3')
    await fresh.replicated()
    expect(batches.filter((b) => b.name === 'old').map((b) => b.full)).toEqual([true])
    expect(fresh.mirrorStatus().replicas[0]).toMatchObject({ state: 'idle', consistent: true })
    await fresh.close()
    // The old store is the new primary's, with none of its own writes after the fork left in it.
    expect(await data(oldDir)).toEqual(await data(backupDir))
    // Its writes after the fork are in the file: all of its keys as they were, since its log could not name them.
    const saved = lines(lost)
    expect(saved[0]).toMatchObject({ 'mirror-level': 'discarded writes', exact: false })
    const writes = new Map(saved.slice(1).map((l) => [decodeBytes(l.key as never).toString(), l.value === null ? null : decodeBytes(l.value as never).toString()]))
    expect(writes.get('k1')).toBe('lost-1')
    expect(writes.get('only-old')).toBe('lost-3')
    expect(writes.has('k2')).toBe(false) // deleted on the old primary after the fork
    expect(writes.get('k3')).toBe('v3')
    expect(writes.size).toBe(50) // k0-k49 without k2, with only-old
    expect(fork).toBe(50)
  })

  it('truncateLog: false keeps the records the absent replicas lack, and mirror-level verify opens that way: the other replica catches up from the log', async () => {
    const pDir = join(tmp.dir, 'keep-p')
    const aDir = join(tmp.dir, 'keep-a')
    const bDir = join(tmp.dir, 'keep-b')
    const both = (): MirrorLevel => new MirrorLevel(new ClassicLevel(pDir), { replicas: [new LevelReplica(new ClassicLevel(aDir), { name: 'a' }), new LevelReplica(new ClassicLevel(bDir), { name: 'b' })] })
    const first = both()
    for (let i = 0; i < 20; i++) await first.put(`k${i}`, 'v')
    await first.replicated()
    await first.close()
    expect(() => new MirrorLevel(new MemoryLevel(), { truncateLog: 'no' } as never)).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION', message: expect.stringContaining('truncateLog') }))
    const onlyA = new MirrorLevel(new ClassicLevel(pDir), { replicas: [new LevelReplica(new ClassicLevel(aDir), { name: 'a' })], truncateLog: false })
    for (let i = 0; i < 20; i++) await onlyA.put(`late${i}`, 'v')
    await onlyA.replicated()
    await sleep(50) // a truncation, were there one, has run by now
    const kept = onlyA.head!.logBytes
    expect(kept).toBeGreaterThan(0)
    await onlyA.close()
    const verified = await runCli(['verify', pDir, aDir])
    expect(verified.code).toBe(0)
    const again = both()
    const batches: Batch[] = []
    again.on('replica-batch', (e) => batches.push(e))
    await again.open()
    expect(again.head!.logBytes).toBe(kept) // verify let nothing go
    await again.replicated()
    expect(batches.filter((b) => b.name === 'b')).toEqual([expect.objectContaining({ full: false, from: 20, to: 40 })])
    await again.close()
    expect(await data(bDir)).toEqual(await data(pDir))
  })

  it('demote of a store whose log merged its records into "any key" saves every key it holds and says so (exact: false), not that the file will be exact', async () => {
    const dir = join(tmp.dir, 'merged-old')
    const file = join(tmp.dir, 'merged-lost.jsonl')
    const db = new MirrorLevel(new ClassicLevel(dir), { logBudget: 1024 })
    for (let i = 0; i < 300; i++) await db.put(`key-${String(i).padStart(4, '0')}`, 'v')
    await db.close()
    const report = await demoteStore(new ClassicLevel(dir) as never, { saveDiscarded: file })
    expect(report.text).toMatch(/cannot name the keys it changed .* saved all 300 key\(s\) .*exact: false.*compare the file with the new primary/)
    expect(report.text).not.toMatch(/keeps exactly/)
    expect(lines(file)[0]).toMatchObject({ exact: false, fork: null })
    expect(lines(file)).toHaveLength(301)
  })

  it('a rejoin cut off after its batch landed, before the file was narrowed: the next open of the replica narrows it', async () => {
    const dir = join(tmp.dir, 'narrow-replica')
    const file = join(tmp.dir, 'narrow-lost.jsonl')
    writeFileSync(file, [
      JSON.stringify({ 'mirror-level': 'discarded writes', format: 1, history: [], head: 12, fork: null, exact: true }),
      JSON.stringify({ seq: 9, key: { utf8: 'before' }, value: { utf8: 'x' } }),
      JSON.stringify({ seq: 11, key: { utf8: 'after' }, value: null })
    ].join('\n') + '\n')
    // What the landing batch leaves when the process dies right after it.
    const raw = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    await raw.put(metaKeys.narrow, Buffer.from(JSON.stringify({ path: file, fork: 10, spans: false })))
    await raw.close()
    const engine = new ReplicaEngine(new ClassicLevel(dir) as never)
    await engine.open()
    await engine.close()
    expect(lines(file)).toEqual([expect.objectContaining({ fork: 10, exact: true }), { seq: 11, key: { utf8: 'after' }, value: null }])
    const after = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    expect(await after.get(metaKeys.narrow)).toBeUndefined()
    await after.close()
  })

  it('a demoted store moved where the directory of its file does not exist: the full copy waits, failed with what to do, its data untouched; once the directory is there it goes on', async () => {
    const oldDir = join(tmp.dir, 'moved-old')
    const backupDir = join(tmp.dir, 'moved-backup')
    const secondDir = join(tmp.dir, 'moved-second')
    const files = join(tmp.dir, 'moved-files')
    mkdirSync(files)
    const lost = join(files, 'lost.jsonl')
    const old = new MirrorLevel(new ClassicLevel(oldDir), { replicas: [new LevelReplica(new ClassicLevel(backupDir), { name: 'backup' }), new LevelReplica(new ClassicLevel(secondDir), { name: 'second' })] })
    for (let i = 0; i < 20; i++) await old.put(`k${i}`, `v${i}`)
    await old.replicated()
    await old.close()
    const alone = new MirrorLevel(new ClassicLevel(oldDir), { replicas: [new LevelReplica(new ClassicLevel(secondDir), { name: 'second' })] })
    await alone.put('k1', 'lost-1')
    await alone.replicated()
    await until(() => alone.head!.logBytes === 0)
    await alone.close()
    await promoteStore(new ClassicLevel(backupDir) as never)
    await demoteStore(new ClassicLevel(oldDir) as never, { saveDiscarded: lost })
    // As if on another machine: the file and its directory are not there.
    rmSync(files, { recursive: true })
    const before = await data(oldDir)

    const fresh = new MirrorLevel(new ClassicLevel(backupDir), { replicas: [new LevelReplica(new ClassicLevel(oldDir), { name: 'old', retryMinDelay: 10, retryMaxDelay: 50 })] })
    await fresh.put('k3', 'new-3')
    await until(() => fresh.mirrorStatus().replicas[0].state === 'failed')
    expect(fresh.mirrorStatus().replicas[0]).toMatchObject({ errorCode: 'MIRROR_INVALID_OPTION', error: expect.stringContaining(`${files} does not exist here: create it`) })
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(fresh.mirrorStatus().replicas[0].state).toBe('failed')
    mkdirSync(files)
    await until(() => fresh.mirrorStatus().replicas[0].state === 'idle')
    await fresh.replicated()
    await fresh.close()
    expect(await data(oldDir)).toEqual(await data(backupDir))
    // What the old store held before the copy replaced it is in the file, whole.
    const saved = lines(lost)
    expect(saved[0]).toMatchObject({ exact: false, fork: null })
    const writes = new Map(saved.slice(1).map((l) => [decodeBytes(l.key as never).toString('hex'), decodeBytes(l.value as never).toString('hex')]))
    expect(writes).toEqual(before)
    expect(writes.get(Buffer.from('k1').toString('hex'))).toBe(Buffer.from('lost-1').toString('hex'))
  })

  it('a full copy started over into a demoted store does not dump the whole store again: the file already holds it at that head', async () => {
    const db = new MemoryLevel<string, string>()
    await db.batch([{ type: 'put', key: 'a', value: '1' }, { type: 'put', key: 'b', value: '2' }])
    const file = join(tmp.dir, 'whole.jsonl')
    expect(await saveEveryKey(db as never, file, [], 5)).toBe(2)
    await db.put('c', '3') // (a demoted store takes no writes: this only shows the dump is skipped)
    expect(await saveEveryKey(db as never, file, [], 5)).toBe(0)
    expect(lines(file)).toHaveLength(3)
    expect(await saveEveryKey(db as never, file, [], 6)).toBe(3) // another head: not the same dump
    expect(lines(file)[0]).toMatchObject({ head: 6, exact: false, fork: null })
  })

  it('demote refuses to drop writes silently, and refuses what is not a primary', async () => {
    const dir = join(tmp.dir, 'refuse')
    const db = new MirrorLevel(new ClassicLevel(dir))
    await db.put('a', '1')
    await db.close()
    await expect(demoteStore(new ClassicLevel(dir) as never)).rejects.toMatchObject({ code: 'MIRROR_INVALID_OPTION' })
    await demoteStore(new ClassicLevel(dir) as never, { discard: true })
    await expect(demoteStore(new ClassicLevel(dir) as never, { discard: true })).rejects.toMatchObject({ code: 'MIRROR_WRONG_ROLE' })
    await expect(promoteStore(new ClassicLevel(dir) as never)).rejects.toMatchObject({ code: 'MIRROR_WRONG_ROLE' })
    const plain = new ClassicLevel(join(tmp.dir, 'plain'))
    await plain.put('x', 'y')
    await plain.close()
    await expect(promoteStore(plain as never)).rejects.toMatchObject({ code: 'MIRROR_WRONG_ROLE' })
  })

  it('a demoted store of an unrelated history is refused; with overwrite it gets a full copy and says so; its saved writes stay', async () => {
    const dir = join(tmp.dir, 'unrelated')
    const lost = join(tmp.dir, 'unrelated.jsonl')
    const db = new MirrorLevel(new ClassicLevel(dir))
    await db.put('theirs', '1')
    await db.close()
    await demoteStore(new ClassicLevel(dir) as never, { saveDiscarded: lost })
    const wrong = new MirrorLevel(new ClassicLevel(join(tmp.dir, 'unrelated-primary')), { replicas: [new LevelReplica(new ClassicLevel(dir), { retryMaxDelay: 100 })] })
    await wrong.put('mine', '2')
    await until(() => wrong.mirrorStatus().replicas[0].state === 'refused')
    expect(wrong.mirrorStatus().replicas[0]).toMatchObject({ errorCode: 'MIRROR_REPLICA_NOT_EMPTY' })
    await wrong.close()
    expect([...(await data(dir)).keys()].map((k) => Buffer.from(k, 'hex').toString())).toEqual(['theirs'])
    const primary = new MirrorLevel(new ClassicLevel(join(tmp.dir, 'unrelated-primary')), { replicas: [new LevelReplica(new ClassicLevel(dir), { overwrite: true })] })
    const batches: Array<Batch & { reason?: string }> = []
    primary.on('replica-batch', (e) => batches.push(e))
    await primary.open()
    await primary.replicated()
    expect(batches[0].full).toBe(true)
    expect(batches[0].reason).toMatch(/another line of history/)
    expect(primary.mirrorStatus().replicas[0].reason).toMatch(/full copy/)
    await primary.close()
    expect([...(await data(dir)).keys()].map((k) => Buffer.from(k, 'hex').toString())).toEqual(['mine'])
    expect(lines(lost).slice(1).map((l) => decodeBytes(l.key as never).toString())).toEqual(['theirs'])
  })
})

describe('rejoin, more ways', () => {
  const tmp = tempDir()
  afterAll(() => tmp.cleanup())

  // A primary with a replica, forked: the old primary writes alone, the replica is promoted.
  async function forked (name: string): Promise<{ oldDir: string, newDir: string, fork: number }> {
    const oldDir = join(tmp.dir, `${name}-old`)
    const newDir = join(tmp.dir, `${name}-new`)
    const db = new MirrorLevel(new ClassicLevel(oldDir), { replicas: [new LevelReplica(new ClassicLevel(newDir))] })
    for (let i = 0; i < 100; i++) await db.put(`k${i}`, `v${i}`)
    await db.replicated()
    const fork = db.head!.seq
    await db.close()
    const alone = new MirrorLevel(new ClassicLevel(oldDir))
    for (let i = 0; i < 5; i++) await alone.put(`k${i}`, 'lost')
    await alone.close()
    await promoteStore(new ClassicLevel(newDir) as never)
    return { oldDir, newDir, fork }
  }

  it('rejoins before the new primary has written anything', async () => {
    const { oldDir, newDir, fork } = await forked('nowrite')
    await demoteStore(new ClassicLevel(oldDir) as never, { discard: true })
    const batches: Batch[] = []
    const db = new MirrorLevel(new ClassicLevel(newDir), { replicas: [new LevelReplica(new ClassicLevel(oldDir))] })
    db.on('replica-batch', (e) => batches.push(e))
    await db.open()
    await db.replicated()
    await db.close()
    expect(batches).toMatchObject([{ from: fork, to: fork, full: false, ops: 5 }])
    expect(await data(oldDir)).toEqual(await data(newDir))
  })

  it('rejoins over TCP, the demoted directory under the server\'s --dir: no full copy, the saved file narrowed', async () => {
    const { MirrorServer } = await import('../lib/net/server')
    const { TcpReplica } = await import('../adapters/tcp')
    const { renameSync, mkdirSync } = await import('node:fs')
    const { oldDir, newDir, fork } = await forked('tcp')
    const lost = join(tmp.dir, 'tcp-lost.jsonl')
    await demoteStore(new ClassicLevel(oldDir) as never, { saveDiscarded: lost })
    const serverDir = join(tmp.dir, 'srv')
    mkdirSync(serverDir)
    renameSync(oldDir, join(serverDir, 'app'))
    const key = 'rejoin-over-tcp-key-0123456789ab'
    const server = new MirrorServer({ dir: serverDir, key, port: 0 })
    const { port } = await server.listen()
    const batches: Batch[] = []
    const db = new MirrorLevel(new ClassicLevel(newDir), { replicas: [new TcpReplica({ port, resource: 'app', key })] })
    db.on('replica-batch', (e) => batches.push(e))
    await db.put('new', 'x')
    await db.replicated()
    await db.close()
    await server.close()
    expect(batches.every((b) => !b.full)).toBe(true)
    expect(batches[0]).toMatchObject({ from: fork })
    expect(await data(join(serverDir, 'app'))).toEqual(await data(newDir))
    const saved = lines(lost)
    expect(saved[0]).toMatchObject({ fork, exact: true })
    expect(saved.slice(1).map((l) => decodeBytes(l.key as never).toString()).sort()).toEqual(['k0', 'k1', 'k2', 'k3', 'k4'])
  })
})
