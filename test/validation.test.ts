import { afterAll, describe, expect, it } from 'vitest'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { TcpReplica } from '../adapters/tcp'
import { MirrorServer } from '../lib/net/server'
import { tempDir } from './helpers'

const KEY = 'c0ffee'.repeat(11)
const tmp = tempDir('mirror-level-validation-')
afterAll(() => tmp.cleanup())
let n = 0
const fresh = (): string => join(tmp.dir, `t${n++}`)

/** A self-signed certificate for localhost and 127.0.0.1, and its key (PEM). */
function makeCert (name: string): { cert: Buffer, key: Buffer, certFile: string, keyFile: string } {
  const certFile = join(tmp.dir, `${name}-cert.pem`)
  const keyFile = join(tmp.dir, `${name}-key.pem`)
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' })
  return { cert: readFileSync(certFile), key: readFileSync(keyFile), certFile, keyFile }
}
const ours = makeCert('ours')
const theirs = makeCert('theirs')

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

describe('TcpReplica options', () => {
  const base = { resource: 'r', key: KEY }

  it('refuses a host that is not a non-empty string, a tls that is neither a boolean nor an object, and a heartbeatTimeout not above heartbeatInterval', () => {
    const bad: Array<[string, Record<string, unknown>]> = [
      ['host', { host: 123 }],
      ['host', { host: '' }],
      ['tls', { tls: 'yes' }],
      ['tls', { tls: null }],
      ['tls', { tls: [] }],
      ['heartbeatTimeout', { heartbeatTimeout: 5000 }], // equal to the default interval
      ['heartbeatTimeout', { heartbeatInterval: 2000, heartbeatTimeout: 1000 }],
      ['heartbeatTimeout', { heartbeatInterval: 20_000 }] // above the default timeout
    ]
    for (const [name, options] of bad) {
      expect(() => new TcpReplica({ ...base, ...options } as never), JSON.stringify(options)).toThrow(invalid(name))
    }
    expect(new TcpReplica({ ...base, heartbeatInterval: 100, heartbeatTimeout: 101, tls: true }).options.host).toBe('127.0.0.1')
  })

  it('refuses TLS material that does not parse or does not fit together, naming the option', () => {
    const bad: Array<[string, Record<string, unknown>]> = [
      ['tls.ca', { ca: 'not a pem' }],
      ['tls.ca', { ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }],
      ['tls.ca', { ca: [ours.cert, 'not a pem'] }],
      ['tls.ca', { ca: 123 }],
      ['tls.cert', { cert: 'not a pem', key: ours.key }],
      ['tls.key', { cert: ours.cert, key: 'not a pem' }],
      ['tls.key', { cert: ours.cert, key: theirs.key }],
      ['tls', { ca: ours.cert, minVersion: 'TLSv9' }]
    ]
    for (const [name, tls] of bad) {
      expect(() => new TcpReplica({ ...base, tls } as never), name).toThrow(invalid(name))
    }
    expect(() => new TcpReplica({ ...base, tls: { ca: [ours.cert, theirs.cert], cert: ours.cert, key: ours.key } })).not.toThrow()
  })

  it('MirrorServer refuses a TLS certificate or key that does not parse or does not fit together', () => {
    const dir = fresh()
    const bad: Array<[string, { cert: string | Buffer, key: string | Buffer }]> = [
      ['tls.cert', { cert: 'not a pem', key: ours.key }],
      ['tls.key', { cert: ours.cert, key: 'not a pem' }],
      ['tls.key', { cert: ours.cert, key: theirs.key }]
    ]
    for (const [name, tls] of bad) {
      expect(() => new MirrorServer({ dir, key: KEY, port: 0, tls }), name).toThrow(invalid(name))
    }
    expect(existsSync(dir)).toBe(false)
  })
})
