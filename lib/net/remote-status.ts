import type { ConnectionOptions } from 'node:tls'
import { MirrorError, codes } from '../errors'
import { describe, knownOptions } from '../options'
import { Link } from './client'
import { keyBytes } from './protocol'
import type { ResourceStatus } from './server'

/** Where a `mirror-level serve` is, and the key to show it. */
export interface RemoteOptions {
  host?: string
  port?: number
  key: string | Buffer
  tls?: boolean | ConnectionOptions
  connectTimeout?: number
}

/**
 * The resources of a `mirror-level serve` that `key` may see (`mirror-level status --remote`):
 * what the key may do with each, its watermark and generation, whether it is consistent, the
 * primary streaming to it now, and when it last applied a batch. Opening a resource to look at it
 * runs its recovery, as its primary's next connection would.
 */
export async function listResources (options: RemoteOptions): Promise<ResourceStatus[]> {
  if (typeof options !== 'object' || options === null) throw new MirrorError(`listResources(): options must be an object with a key, got ${describe(options)}`, codes.INVALID_OPTION)
  knownOptions('listResources()', options, ['host', 'port', 'key', 'tls', 'connectTimeout'])
  if (options.host !== undefined && (typeof options.host !== 'string' || options.host.length === 0)) throw new MirrorError(`listResources(): option 'host' must be a non-empty string, got ${describe(options.host)}`, codes.INVALID_OPTION)
  if (options.port !== undefined && (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535)) throw new MirrorError(`listResources(): option 'port' must be 1-65535, got ${describe(options.port)}`, codes.INVALID_OPTION)
  const { link } = await Link.open({ host: options.host ?? '127.0.0.1', port: options.port ?? 7410, resource: '*', tls: options.tls, connectTimeout: options.connectTimeout }, keyBytes(options.key), new AbortController().signal, 'list')
  try {
    const answer = await link.request({ t: 'list' })
    if (!Array.isArray(answer.resources)) throw new MirrorError('the server sent a malformed listing', codes.PROTOCOL)
    return answer.resources as ResourceStatus[]
  } finally {
    link.end()
  }
}
