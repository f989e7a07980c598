import { afterAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { tempDir } from './helpers'
import { drained, exited, runCli, startServer } from './tcp-helpers'

const tmp = tempDir('mirror-level-cli-')
afterAll(() => tmp.cleanup())
let n = 0
const fresh = (): string => join(tmp.dir, `t${n++}`)
const keyFile = join(tmp.dir, 'key')
writeFileSync(keyFile, 'c0ffee'.repeat(11))

/**
 * Resolves once the server at `port` has sent its challenge. serve prints "listening" before it
 * installs its SIGTERM handler, so a signal sent on that line alone can find no handler yet.
 */
function challenged (port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('data', () => { socket.destroy(); resolve() })
    socket.once('error', reject)
  })
}

/** Exit 2 with one line on stderr, matching `message`. */
const usageError = (message: RegExp): object => ({ code: 2, stderr: expect.stringMatching(new RegExp(`^mirror-level: [^\\n]*${message.source}[^\\n]*\\n$`)) })

describe('the mirror-level command line', () => {
  it('the command line: help, keygen, clear errors and exit codes', async () => {
    expect((await runCli(['--help'])).stdout).toMatch(/serve .*keygen .*status/s)
    expect((await runCli(['serve', '--help'])).stdout).toMatch(/--key-file FILE/)
    const key = await runCli(['keygen'])
    expect(key.stdout.trim()).toMatch(/^[0-9a-f]{64}$/)
    const out = join(tmp.dir, 'new-key')
    expect((await runCli(['keygen', '--out', out])).code).toBe(0)
    expect((await runCli(['keygen', '--out', out])).stderr).toMatch(/exists/)
    expect(await runCli(['keygen', '--out', join(tmp.dir, 'no-such-dir', 'key')])).toMatchObject({ code: 2, stderr: expect.stringMatching(/cannot write the key to .*no-such-dir/) })
    const missing = await runCli(['serve', '--dir', fresh()])
    expect(missing).toMatchObject({ code: 2, stderr: expect.stringMatching(/needs --key-file/) })
    const badFile = await runCli(['serve', '--dir', fresh(), '--key-file', '/nonexistent/key'])
    expect(badFile).toMatchObject({ code: 2, stderr: expect.stringMatching(/cannot read the key file/) })
    const shortKey = join(tmp.dir, 'short')
    writeFileSync(shortKey, 'abc')
    expect((await runCli(['serve', '--dir', fresh(), '--key-file', shortKey])).stderr).toMatch(/at least 16 characters/)
    expect((await runCli(['bogus'])).code).toBe(2)
    // status reads a primary's or a plain directory (a replica's: test/tcp.test.ts)
    const primaryDir = fresh()
    const primary = new MirrorLevel(new ClassicLevel(primaryDir))
    await primary.put('a', '1')
    await primary.close()
    expect((await runCli(['status', primaryDir])).stdout).toMatch(/^primary: head seq 1, log \d+ bytes, generation [0-9a-f]{32}/)
    const plainDir = fresh()
    const plain = new ClassicLevel(plainDir)
    await plain.put('k', 'v')
    await plain.close()
    expect((await runCli(['status', plainDir])).stdout).toMatch(/no mirror-level state/)
    expect((await runCli(['status', join(tmp.dir, 'missing')]))).toMatchObject({ code: 2, stderr: expect.stringMatching(/does not exist/) })
    expect((await runCli(['serve', '--dir', fresh(), '--key-file', out, '--port', 'x'])).stderr).toMatch(/whole number/)
  })

  it('serve: a stray argument, an out-of-range number and a short key are usage errors (exit 2, one line)', async () => {
    const shortKey = join(tmp.dir, 'short-key')
    writeFileSync(shortKey, 'abc')
    const serve = (...args: string[]): ReturnType<typeof runCli> => runCli(['serve', '--dir', fresh(), '--key-file', keyFile, '--port', '0', ...args])
    expect(await serve('extra')).toMatchObject(usageError(/Unexpected argument 'extra'/))
    expect(await serve('--port', '99999')).toMatchObject(usageError(/--port must be 0-65535, got 99999/))
    expect(await serve('--max-connections', '0')).toMatchObject(usageError(/--max-connections must be a positive integer, got 0/))
    expect(await serve('--max-frame-bytes', '0')).toMatchObject(usageError(/--max-frame-bytes must be a positive integer, got 0/))
    expect(await serve('--write-buffer-bytes', '1000')).toMatchObject(usageError(/--write-buffer-bytes must be at least 65536, got 1000/))
    expect(await serve('--write-buffer-bytes', String(2 ** 31))).toMatchObject(usageError(/--write-buffer-bytes must be at most 1073741824/))
    expect(await runCli(['serve', '--dir', fresh(), '--key-file', shortKey])).toMatchObject(usageError(/the key in --key-file must be at least 16 characters/))
  })

  it('serve --dir: refuses a regular file (exit 2, the file untouched) and creates a missing directory before it listens', async () => {
    const file = join(tmp.dir, 'a-file')
    writeFileSync(file, 'not a directory')
    expect(await runCli(['serve', '--dir', file, '--key-file', keyFile, '--port', '0'])).toMatchObject(usageError(/--dir must be a directory: .*a-file exists and is not one/))
    expect(readFileSync(file, 'utf8')).toBe('not a directory')
    expect(await runCli(['serve', '--dir', join(file, 'sub'), '--key-file', keyFile, '--port', '0'])).toMatchObject(usageError(/--dir must be a directory: a parent of/))
    const dir = join(fresh(), 'nested', 'replicas')
    const { child, port } = await startServer(['--dir', dir, '--key-file', keyFile, '--port', '0'])
    expect(statSync(dir).isDirectory()).toBe(true)
    await challenged(port)
    child.kill('SIGTERM')
    expect(await exited(child)).toEqual({ code: 0, signal: null })
    const existing = fresh()
    mkdirSync(existing)
    const again = await startServer(['--dir', existing, '--key-file', keyFile, '--port', '0'])
    await challenged(again.port)
    again.child.kill('SIGTERM')
    expect(await exited(again.child)).toEqual({ code: 0, signal: null })
    expect(existsSync(existing)).toBe(true)
    await drained(again.child)
    expect(again.stderr()).toMatch(/SIGTERM: finishing the part in hand and closing/)
  })

  it('serve --quiet logs nothing on a clean stop (only errors)', async () => {
    const server = await startServer(['--dir', fresh(), '--key-file', keyFile, '--port', '0', '--quiet'])
    await challenged(server.port)
    server.child.kill('SIGTERM')
    expect(await exited(server.child)).toEqual({ code: 0, signal: null })
    await drained(server.child)
    expect(server.stderr()).toBe('')
  })

  it('status: a directory another process has open is in use (exit 1)', async () => {
    const dir = fresh()
    const holder = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./fixtures/hold-lock.ts', import.meta.url)), dir], { stdio: ['pipe', 'pipe', 'inherit'] })
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout.on('data', (d) => { if (String(d).includes('open')) resolve() })
        holder.once('exit', (code) => reject(new Error(`the lock holder exited with ${code}`)))
      })
      expect(await runCli(['status', dir])).toEqual({ code: 1, stdout: '', stderr: `mirror-level: ${dir} is in use by another process (a primary, a replica server or another program has it open)\n` })
    } finally {
      holder.stdin.end()
    }
    expect(await exited(holder)).toEqual({ code: 0, signal: null })
    expect(await runCli(['status', dir])).toMatchObject({ code: 0, stdout: expect.stringMatching(/no mirror-level state/) })

    // A primary in this process holds its directory the same way.
    const primaryDir = fresh()
    const primary = new MirrorLevel(new ClassicLevel(primaryDir))
    await primary.put('a', '1')
    expect(await runCli(['status', primaryDir])).toMatchObject({ code: 1, stderr: expect.stringMatching(/is in use by another process/) })
    await primary.close()
  })

  it('status: a directory without a LevelDB database is not one (exit 1, nothing written into it)', async () => {
    const junk = fresh()
    mkdirSync(join(junk, 'sub'), { recursive: true })
    writeFileSync(join(junk, 'notes.txt'), 'hello')
    writeFileSync(join(junk, '000005.ldb'), randomBytes(512))
    const before = readdirSync(junk).sort()
    expect(await runCli(['status', junk])).toEqual({ code: 1, stdout: '', stderr: `mirror-level: ${junk} is not a LevelDB database\n` })
    expect(readdirSync(junk).sort()).toEqual(before)
    writeFileSync(join(junk, 'CURRENT'), randomBytes(64))
    expect(await runCli(['status', junk])).toMatchObject({ code: 1, stderr: expect.stringMatching(/is not a LevelDB database \(/) })
    const file = join(tmp.dir, 'status-file')
    writeFileSync(file, 'x')
    expect(await runCli(['status', file])).toMatchObject({ code: 1, stderr: expect.stringMatching(/is not a LevelDB database/) })
  })
})
