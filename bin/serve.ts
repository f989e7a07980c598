// mirror-level serve: host replica databases for remote primaries.
import { randomBytes } from 'node:crypto'
import { existsSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { MirrorServer } from '../lib/net/server'
import { UsageError, fail, readFile, wholeNumber } from './cli'

export const serveUsage = `mirror-level serve --dir DIR (--key-file FILE | --keys FILE) [options]

Hosts one classic-level replica database per resource, at DIR/<resource>, for primaries that
connect with TcpReplica and prove they hold the same pre-shared key.

  --dir DIR               where the replica databases live (created if missing)
  --key-file FILE         the pre-shared key, as text (make one with 'mirror-level keygen'): it may
                          read and write every resource
  --keys FILE             instead of --key-file: several keys, each limited to some resources and
                          to reading or writing. One per line: KEY [RESOURCES] [RIGHTS], where
                          RESOURCES is '*' or names separated by commas and RIGHTS is read, write
                          or read,write (default: '*' read,write); '#' starts a comment
  --port N                port to listen on (default 7410; 0 picks one and prints it)
  --host ADDR             address to listen on (default 127.0.0.1)
  --tls-cert FILE         TLS certificate (PEM); with --tls-key, the server speaks TLS only
  --tls-key FILE          TLS private key (PEM)
  --max-connections N     connections at once (default 64)
  --max-frame-bytes N     largest frame accepted (default 67108864); primaries send parts of half that
  --max-buffered-bytes N  bytes of large frames held at once over all connections (default 268435456);
                          replicas hold as much again of batches they apply in one step
  --write-buffer-bytes N  LevelDB write buffer of each replica database (default 33554432): larger
                          catches up faster on random-order backlogs; each open one may hold two
  --quiet                 log nothing but errors

SIGTERM or SIGINT: stop accepting, finish the part in hand, close every database, exit 0.`

// MirrorServer names its options; the user typed flags.
const flags: Record<string, string> = {
  dir: '--dir', host: '--host', port: '--port', 'tls.cert': '--tls-cert', 'tls.key': '--tls-key',
  maxConnections: '--max-connections', maxFrameBytes: '--max-frame-bytes', maxBufferedBytes: '--max-buffered-bytes',
  writeBufferBytes: '--write-buffer-bytes'
}
export function inFlags (message: string): string {
  return message
    .replace(/^MirrorServer: /, '')
    .replace(/(?:option )?'([^']+)'/g, (quoted, name: string) => flags[name] ?? quoted)
    .replace(/^The pre-shared key/, 'the key in --key-file')
}

export async function serve (argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: 'string' },
      'key-file': { type: 'string' },
      keys: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'max-connections': { type: 'string' },
      'max-frame-bytes': { type: 'string' },
      'max-buffered-bytes': { type: 'string' },
      'write-buffer-bytes': { type: 'string' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean' }
    }
  })
  if (values.help === true) return void console.log(serveUsage)
  if (values.dir === undefined) throw new UsageError('serve needs --dir DIR')
  if (values['key-file'] !== undefined && values.keys !== undefined) throw new UsageError('serve takes --key-file FILE or --keys FILE, not both')
  if (values['key-file'] === undefined && values.keys === undefined) throw new UsageError('serve needs --key-file FILE (one key) or --keys FILE (keys with rights)')
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw new UsageError('--tls-cert and --tls-key go together')
  const read = readFile
  const number = wholeNumber
  const quiet = values.quiet === true
  const server = new MirrorServer({
    dir: values.dir,
    ...(values.keys !== undefined ? { keys: read(values.keys, 'keys file').toString('utf8') } : { key: read(values['key-file']!, 'key file') }),
    port: number('port', values.port),
    host: values.host,
    tls: values['tls-cert'] !== undefined ? { cert: read(values['tls-cert'], 'TLS certificate'), key: read(values['tls-key']!, 'TLS key') } : undefined,
    maxConnections: number('max-connections', values['max-connections']),
    maxFrameBytes: number('max-frame-bytes', values['max-frame-bytes']),
    maxBufferedBytes: number('max-buffered-bytes', values['max-buffered-bytes']),
    writeBufferBytes: number('write-buffer-bytes', values['write-buffer-bytes']),
    log: (line) => {
      if (!quiet || /fail|error/i.test(line)) process.stderr.write(`${new Date().toISOString()} ${line}\n`)
    }
  })
  // Installed before "listening" is printed: whoever waits for that line may signal at once.
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    // A clean stop is no error: --quiet ("log nothing but errors") leaves it out.
    if (!quiet) process.stderr.write(`${new Date().toISOString()} ${signal}: finishing the part in hand and closing\n`)
    server.close().then(() => process.exit(0), (err) => fail(`closing failed: ${(err as Error).message}`))
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  const { host, port } = await server.listen()
  process.stdout.write(`mirror-level serve: listening on ${host}:${port}\n`)
}


export const keygenUsage = `mirror-level keygen [--out FILE]

Prints a new pre-shared key: 32 random bytes in hex. With --out, writes it to FILE (mode 0600)
instead, refusing to overwrite an existing file.`

export function keygen (argv: string[]): void {
  const { values } = parseArgs({ args: argv, options: { out: { type: 'string' }, help: { type: 'boolean' } } })
  if (values.help === true) return void console.log(keygenUsage)
  const key = randomBytes(32).toString('hex')
  if (values.out === undefined) return void console.log(key)
  if (existsSync(values.out)) throw new UsageError(`${values.out} exists; not overwriting a key`)
  try {
    writeFileSync(values.out, `${key}\n`, { mode: 0o600 })
  } catch (err) {
    throw new UsageError(`cannot write the key to ${values.out}: ${(err as Error).message}`)
  }
  console.log(`wrote a new key to ${values.out}`)
}
