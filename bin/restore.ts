// mirror-level restore: get a primary's store back from a replica, with progress on a terminal.
import { parseArgs } from 'node:util'
import { restore, type RestoreProgress } from '../lib/recovery/restore'
import { parseRemote } from '../lib/recovery/sources'
import { UsageError, keyFile, onePositional, readFile } from './cli'

export const restoreUsage = `mirror-level restore --from SOURCE TARGET [--key-file FILE] [--tls-ca FILE]

Writes a new primary's store into TARGET (a new or empty directory) from a replica:
  SOURCE a replica directory (its server or primary stopped), or
         tcp://HOST:PORT/RESOURCE (tls://... for TLS) of a mirror-level serve; the key
         in --key-file needs the read right there (see serve --keys).
Interrupted, it continues where it stopped when run again with the same arguments. At the end
it checks that TARGET holds exactly what the source holds, then makes TARGET a primary that
continues the source's line: open it with MirrorLevel, and the source is accepted as its replica
without a full copy. Shows progress (bytes, entries, rate, ETA): one updating line on a terminal,
a line every few seconds otherwise.`

function mib (n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}

function clock (seconds: number): string {
  const s = Math.round(seconds)
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

function line (p: RestoreProgress): string {
  const of = p.totalBytes !== null && p.totalBytes > 0 ? ` of about ${mib(p.totalBytes)} (${Math.min(99, Math.floor(100 * p.bytes / p.totalBytes))}%)` : ''
  const eta = p.eta !== null ? `, ETA ${clock(p.eta)}` : ''
  if (p.phase === 'verifying') return `verifying ${p.entries} entries, ${mib(p.bytes)} against the source`
  if (p.phase === 'done') return `restored ${p.entries} entries, ${mib(p.bytes)}`
  return `restoring${p.resumed ? ' (resumed)' : ''}: ${mib(p.bytes)}${of}, ${p.entries} entries, ${mib(p.rate)}/s${eta}`
}

export async function restoreCommand (argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { from: { type: 'string' }, 'key-file': { type: 'string' }, 'tls-ca': { type: 'string' }, help: { type: 'boolean' } }
  })
  if (values.help === true) return void console.log(restoreUsage)
  if (values.from === undefined) throw new UsageError('restore needs --from SOURCE (a replica directory or tcp://HOST:PORT/RESOURCE)')
  const to = onePositional(positionals, 'restore', 'target directory')
  const remote = parseRemote(values.from)
  const tty = process.stderr.isTTY === true
  let last = 0
  const report = await restore({
    from: values.from,
    to,
    key: remote !== null ? keyFile(values['key-file'], 'restore from a server') : undefined,
    tls: values['tls-ca'] !== undefined ? { ca: readFile(values['tls-ca'], 'CA certificate') } : undefined,
    progressInterval: tty ? 250 : 2000,
    onProgress: (p) => {
      if (tty) {
        process.stderr.write(`\r\x1b[K${line(p)}${p.phase === 'done' ? '\n' : ''}`)
      } else if (p.phase !== 'copying' || Date.now() - last >= 2000) {
        last = Date.now()
        process.stderr.write(`${line(p)}\n`)
      }
    }
  })
  console.log(report.text)
}
