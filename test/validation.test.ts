import { afterAll, describe, expect, it } from 'vitest'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { MirrorServer } from '../lib/net/server'
import { tempDir } from './helpers'

const KEY = 'c0ffee'.repeat(11)
const tmp = tempDir('mirror-level-validation-')
afterAll(() => tmp.cleanup())
let n = 0
const fresh = (): string => join(tmp.dir, `t${n++}`)

const invalid = (name: string): unknown => expect.objectContaining({ code: 'MIRROR_INVALID_OPTION', message: expect.stringContaining(`'${name}'`) })

describe('MirrorServer options', () => {
  it('refuses a host that is not a non-empty string, a log that is not a function, and a tls without cert and key', () => {
    const dir = fresh()
    const bad: Array<[string, Record<string, unknown>]> = [
      ['host', { host: 123 }],
      ['host', { host: '' }],
      ['log', { log: 'yes' }],
      ['tls', { tls: 'yes' }],
      ['tls', { tls: null }],
      ['tls.key', { tls: { cert: 'PEM' } }],
      ['tls.cert', { tls: { cert: 42, key: 'PEM' } }]
    ]
    for (const [name, options] of bad) {
      expect(() => new MirrorServer({ dir, key: KEY, port: 0, ...options } as never), JSON.stringify(options)).toThrow(invalid(name))
    }
    expect(existsSync(dir)).toBe(false)
  })
})
