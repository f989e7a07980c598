import type { ConnectionOptions } from 'node:tls'
import { MirrorError, codes } from '../errors'
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
  const { link } = await Link.open({ host: options.host ?? '127.0.0.1', port: options.port ?? 7410, resource: '*', tls: options.tls, connectTimeout: options.connectTimeout }, keyBytes(options.key), new AbortController().signal, 'list')
  try {
    const answer = await link.request({ t: 'list' })
    if (!Array.isArray(answer.resources)) throw new MirrorError('the server sent a malformed listing', codes.PROTOCOL)
    return answer.resources as ResourceStatus[]
  } finally {
    link.end()
  }
}
