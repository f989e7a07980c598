import { X509Certificate } from 'node:crypto'
import { createSecureContext, type SecureContextOptions } from 'node:tls'
import { MirrorError, codes } from '../errors'
import { describe } from '../options'

/**
 * Refuses TLS material that cannot work, naming the option, when the options are given: otherwise
 * OpenSSL reports it in the middle of a connection attempt, in its own words, or (for `ca`) not at
 * all: Node skips a CA it cannot parse, and the handshake then fails as "not trusted".
 */
export function checkTls (where: string, name: string, options: SecureContextOptions): void {
  if (options.ca !== undefined) checkCa(where, `${name}.ca`, options.ca)
  try {
    createSecureContext(options)
  } catch (err) {
    // Which option is at fault: each alone, then the pair (a key that is not the certificate's).
    for (const [part, what] of [['cert', 'a PEM certificate'], ['key', 'a PEM private key'], ['pfx', 'a PKCS#12 archive'], ['crl', 'a PEM CRL']] as const) {
      if (options[part] === undefined) continue
      try {
        createSecureContext({ [part]: options[part], passphrase: options.passphrase })
      } catch (alone) {
        throw new MirrorError(`${where}: option '${name}.${part}' is not ${what} that can be used (${reason(alone)})`, codes.INVALID_OPTION, { cause: alone })
      }
    }
    if ((err as { code?: string }).code === 'ERR_OSSL_X509_KEY_VALUES_MISMATCH') {
      throw new MirrorError(`${where}: option '${name}.key' is not the private key of '${name}.cert'`, codes.INVALID_OPTION, { cause: err })
    }
    throw new MirrorError(`${where}: option '${name}' is not usable: ${reason(err)}`, codes.INVALID_OPTION, { cause: err })
  }
}

function checkCa (where: string, name: string, ca: unknown): void {
  for (const entry of Array.isArray(ca) ? ca : [ca]) {
    if (typeof entry !== 'string' && !Buffer.isBuffer(entry)) {
      throw new MirrorError(`${where}: option '${name}' must be PEM text (a string or Buffer, or an array of them), got ${describe(entry)}`, codes.INVALID_OPTION)
    }
    const blocks = [...entry.toString('latin1').matchAll(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g)]
    if (blocks.length === 0) throw new MirrorError(`${where}: option '${name}' holds no PEM certificate`, codes.INVALID_OPTION)
    for (const [block, label] of blocks) {
      if (label !== 'CERTIFICATE' && label !== 'X509 CERTIFICATE') continue
      try {
        new X509Certificate(block)
      } catch (err) {
        throw new MirrorError(`${where}: option '${name}' holds a PEM certificate that does not parse (${reason(err)})`, codes.INVALID_OPTION, { cause: err })
      }
    }
  }
}

function reason (err: unknown): string {
  const e = err as { reason?: string, message?: string }
  return e.reason ?? e.message ?? String(err)
}
