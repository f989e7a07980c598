import { afterAll, describe, expect, it } from 'vitest'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { tempDir } from './helpers'
import { runCli } from './tcp-helpers'

const tmp = tempDir('mirror-level-cli-')
afterAll(() => tmp.cleanup())
let n = 0
const fresh = (): string => join(tmp.dir, `t${n++}`)

describe('the mirror-level command line', () => {
  it('the command line: help, keygen, clear errors and exit codes', async () => {
    expect((await runCli(['--help'])).stdout).toMatch(/serve .*keygen .*status/s)
    expect((await runCli(['serve', '--help'])).stdout).toMatch(/--key-file FILE/)
    const key = await runCli(['keygen'])
    expect(key.stdout.trim()).toMatch(/^[0-9a-f]{64}$/)
    const out = join(tmp.dir, 'new-key')
    expect((await runCli(['keygen', '--out', out])).code).toBe(0)
    expect((await runCli(['keygen', '--out', out])).stderr).toMatch(/exists/)
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
})
