import { MirrorError, codes } from '../errors'
import { keyBytes, validResource } from './protocol'

/** What a key may do: stream batches to a resource as its primary (`write`), or read it (`read`: restore, status, verify). */
export type Right = 'read' | 'write'

/** One key a server accepts, with the resources it may use and how. */
export interface KeyGrant {
  key: Buffer
  /** `'*'`: every resource. */
  resources: '*' | string[]
  rights: ReadonlySet<Right>
  /** How the key is named in logs: its line in the keys file, or `key`. */
  label: string
}

/** A key that may do anything (`--key-file`, the `key` option). */
export function fullGrant (text: string | Buffer): KeyGrant {
  return { key: keyBytes(text), resources: '*', rights: new Set(['read', 'write']), label: 'key' }
}

/**
 * Parses a keys file (`mirror-level serve --keys FILE`): one key per line, then optionally the
 * resources it may use (comma-separated names, or `*`) and its rights (`read`, `write` or
 * `read,write`; default both). `#` starts a comment.
 *
 *     # key (mirror-level keygen)                                       resources      rights
 *     3f1a...                                                           app-db,photos  write
 *     77aa...                                                           app-db         read
 */
export function parseKeys (text: string): KeyGrant[] {
  const grants: KeyGrant[] = []
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim()
    if (line.length === 0) return
    const [key, resources = '*', rights = 'read,write', ...extra] = line.split(/\s+/)
    const where = `keys file, line ${i + 1}`
    if (extra.length > 0) throw new MirrorError(`${where}: expected KEY [RESOURCES] [RIGHTS], got ${extra.length + 3} fields`, codes.INVALID_OPTION)
    const names = resources === '*' ? '*' : resources.split(',')
    if (names !== '*' && !names.every(validResource)) throw new MirrorError(`${where}: resources must be '*' or resource names separated by commas, got '${resources}'`, codes.INVALID_OPTION)
    const set = new Set(rights.split(','))
    if (set.size === 0 || ![...set].every((r) => r === 'read' || r === 'write')) throw new MirrorError(`${where}: rights must be read, write or read,write, got '${rights}'`, codes.INVALID_OPTION)
    let bytes: Buffer
    try {
      bytes = keyBytes(key)
    } catch (err) {
      throw new MirrorError(`${where}: ${(err as Error).message}`, codes.INVALID_OPTION)
    }
    // Only one line of a key could ever count: a second is a mistake, not a second grant.
    const twice = grants.find((g) => g.key.equals(bytes))
    if (twice !== undefined) throw new MirrorError(`${where}: the same key as ${twice.label}; give each key one line with all its resources and rights`, codes.INVALID_OPTION)
    grants.push({ key: bytes, resources: names, rights: set as Set<Right>, label: `keys file line ${i + 1}` })
  })
  if (grants.length === 0) throw new MirrorError('The keys file holds no key', codes.INVALID_OPTION)
  return grants
}

export function allows (grant: KeyGrant, resource: string, right: Right): boolean {
  return grant.rights.has(right) && (grant.resources === '*' || grant.resources.includes(resource))
}

/** Whether the key may see `resource` at all (in a listing). */
export function sees (grant: KeyGrant, resource: string): boolean {
  return grant.resources === '*' || grant.resources.includes(resource)
}
