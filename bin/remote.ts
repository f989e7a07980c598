// mirror-level status --remote: what a server holds, as far as a key may see.
import { listResources } from '../lib/net/remote-status'
import { UsageError, keyFile, readFile } from './cli'

/** `HOST:PORT` (or `[v6]:PORT`, or `HOST` for port 7410). */
export function hostPort (text: string): { host: string, port: number } {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(text)
  if (m === null) throw new UsageError(`expected HOST:PORT, got '${text}'`)
  const port = m[2] === undefined ? 7410 : Number(m[2])
  if (port < 1 || port > 65535) throw new UsageError(`the port must be 1-65535, got ${port}`)
  return { host: m[1].replace(/^\[|\]$/g, ''), port }
}

export async function remoteStatus (remote: string, key: string | undefined, ca: string | undefined, json: boolean): Promise<void> {
  const where = hostPort(remote)
  const resources = await listResources({ ...where, key: keyFile(key, 'status --remote'), tls: ca === undefined ? undefined : { ca: readFile(ca, 'CA certificate') } })
  if (json) return void console.log(JSON.stringify(resources, null, 2))
  if (resources.length === 0) return void console.log(`${remote}: no resources this key may see`)
  for (const r of resources) {
    const primary = r.primary !== null ? `primary connected (${r.primary})` : 'no primary connected'
    const last = r.lastBatchAt === null ? 'no batch since the server started' : `last batch ${new Date(r.lastBatchAt).toISOString()}`
    const state = r.role === 'unreadable' ? `unreadable: ${r.error ?? ''}` : `${r.role}, watermark ${r.watermark}, generation ${r.generation ?? '(none)'}, ${r.consistent ? 'consistent' : 'NOT consistent'}`
    console.log(`${r.name} [${r.rights.join(',')}]: ${state}; ${primary}; ${last}`)
  }
}
