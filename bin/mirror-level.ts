// The mirror-level command line: serve replicas to remote primaries, make keys, inspect stores.
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ClassicLevel } from 'classic-level'
import { MirrorServer } from '../lib/net/server'
import { inspectStore } from '../lib/replica/inspect'
import { recoverStore } from '../lib/replica/recover'

const usage: Record<string, string> = {
  main: `mirror-level <command> [options]

Commands:
  serve     host replica databases for remote primaries (TcpReplica)
  keygen    print a new pre-shared key (32 random bytes, hex)
  status    show what a primary or replica directory holds, and whether plain level reads a real state
  recover   finish or drop a replica's half-applied batch, so plain level reads a real state

Run 'mirror-level <command> --help' for a command's options.`,
  serve: `mirror-level serve --dir DIR --key-file FILE [options]

Hosts one classic-level replica database per resource, at DIR/<resource>, for primaries that
connect with TcpReplica and prove they hold the same pre-shared key.

  --dir DIR               where the replica databases live (created if missing)
  --key-file FILE         the pre-shared key, as text (make one with 'mirror-level keygen')
  --port N                port to listen on (default 7410; 0 picks one and prints it)
  --host ADDR             address to listen on (default 127.0.0.1)
  --tls-cert FILE         TLS certificate (PEM); with --tls-key, the server speaks TLS only
  --tls-key FILE          TLS private key (PEM)
  --max-connections N     connections at once (default 64)
  --max-frame-bytes N     largest frame accepted (default 67108864); primaries send parts of half that
  --max-buffered-bytes N  bytes of large frames held at once over all connections (default 268435456);
                          replicas hold as much again of batches they apply in one step
  --quiet                 log nothing but errors

SIGTERM or SIGINT: stop accepting, finish the part in hand, close every database, exit 0.`,
  keygen: `mirror-level keygen [--out FILE]

Prints a new pre-shared key: 32 random bytes in hex. With --out, writes it to FILE (mode 0600)
instead, refusing to overwrite an existing file.`,
  status: `mirror-level status DIR [--json]

Shows what a directory holds: for a primary, its head, log size and generation history; for a
replica, its generation, watermark and any staged batch. Open it only while nothing else has it
open (classic-level takes a lock). With --json, 'consistent' is true exactly when the user data, as
it lies on disk, is a state the primary had (plain level then reads a real state).`,
  recover: `mirror-level recover DIR

Runs a replica's recovery on a closed replica directory: a batch that was committed but not fully
applied (the process died during it) is applied; an uncommitted one is dropped; a staged full copy
is kept for its primary to resume. Afterwards plain level reads a real state of the primary.
Nothing to do for a primary's directory. Exits 0 when the directory is consistent afterwards.`
}

class UsageError extends Error {}

// MirrorServer names its options; the user typed flags.
const flags: Record<string, string> = {
  dir: '--dir', host: '--host', port: '--port', 'tls.cert': '--tls-cert', 'tls.key': '--tls-key',
  maxConnections: '--max-connections', maxFrameBytes: '--max-frame-bytes', maxBufferedBytes: '--max-buffered-bytes'
}
function inFlags (message: string): string {
  return message
    .replace(/^MirrorServer: /, '')
    .replace(/(?:option )?'([^']+)'/g, (quoted, name: string) => flags[name] ?? quoted)
    .replace(/^The pre-shared key/, 'the key in --key-file')
}

function fail (message: string, code = 1): never {
  process.stderr.write(`mirror-level: ${message}\n`)
  process.exit(code)
}

async function serve (argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: 'string' },
      'key-file': { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'max-connections': { type: 'string' },
      'max-frame-bytes': { type: 'string' },
      'max-buffered-bytes': { type: 'string' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean' }
    }
  })
  if (values.help === true) return void console.log(usage.serve)
  if (values.dir === undefined) throw new UsageError('serve needs --dir DIR')
  if (values['key-file'] === undefined) throw new UsageError('serve needs --key-file FILE')
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw new UsageError('--tls-cert and --tls-key go together')
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file)
    } catch (err) {
      throw new UsageError(`cannot read the ${what} ${file}: ${(err as Error).message}`)
    }
  }
  const number = (name: string, text: string | undefined): number | undefined => {
    if (text === undefined) return undefined
    if (!/^\d+$/.test(text)) throw new UsageError(`--${name} must be a whole number, got '${text}'`)
    return Number(text)
  }
  const quiet = values.quiet === true
  const server = new MirrorServer({
    dir: values.dir,
    key: read(values['key-file'], 'key file'),
    port: number('port', values.port),
    host: values.host,
    tls: values['tls-cert'] !== undefined ? { cert: read(values['tls-cert'], 'TLS certificate'), key: read(values['tls-key']!, 'TLS key') } : undefined,
    maxConnections: number('max-connections', values['max-connections']),
    maxFrameBytes: number('max-frame-bytes', values['max-frame-bytes']),
    maxBufferedBytes: number('max-buffered-bytes', values['max-buffered-bytes']),
    log: (line) => {
      if (!quiet || /fail|error/i.test(line)) process.stderr.write(`${new Date().toISOString()} ${line}\n`)
    }
  })
  // Installed before "listening" is printed: whoever waits for that line may signal at once.
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    process.stderr.write(`${new Date().toISOString()} ${signal}: finishing the part in hand and closing\n`)
    server.close().then(() => process.exit(0), (err) => fail(`closing failed: ${(err as Error).message}`))
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  const { host, port } = await server.listen()
  process.stdout.write(`mirror-level serve: listening on ${host}:${port}\n`)
}

function keygen (argv: string[]): void {
  const { values } = parseArgs({ args: argv, options: { out: { type: 'string' }, help: { type: 'boolean' } } })
  if (values.help === true) return void console.log(usage.keygen)
  const key = randomBytes(32).toString('hex')
  if (values.out === undefined) return void console.log(key)
  if (existsSync(values.out)) throw new UsageError(`${values.out} exists; not overwriting a key`)
  writeFileSync(values.out, `${key}\n`, { mode: 0o600 })
  console.log(`wrote a new key to ${values.out}`)
}

async function status (argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean' }, help: { type: 'boolean' } } })
  if (values.help === true) return void console.log(usage.status)
  if (positionals.length !== 1) throw new UsageError('status needs one directory')
  const dir = positionals[0]
  if (!existsSync(dir)) throw new UsageError(`${dir} does not exist`)
  // LevelDB writes its LOCK and LOG files into a directory before it finds no database there.
  if (!existsSync(join(dir, 'CURRENT'))) throw new Error(`${dir} is not a LevelDB database`)
  const db = new ClassicLevel(dir, { createIfMissing: false })
  try {
    const report = await inspectStore(db as never)
    console.log(values.json === true ? JSON.stringify(report, null, 2) : report.text)
  } catch (err) {
    const e = err as Error & { code?: string, cause?: Error & { code?: string } }
    if (e.code !== 'LEVEL_DATABASE_NOT_OPEN') throw err
    if (e.cause?.code === 'LEVEL_LOCKED') throw new Error(`${dir} is in use by another process (a primary, a replica server or another program has it open)`)
    throw new Error(`${dir} is not a LevelDB database (${e.cause?.message ?? e.message})`)
  } finally {
    await db.close()
  }
}

async function recover (argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { help: { type: 'boolean' } } })
  if (values.help === true) return void console.log(usage.recover)
  if (positionals.length !== 1) throw new UsageError('recover needs one directory')
  if (!existsSync(positionals[0])) throw new UsageError(`${positionals[0]} does not exist`)
  const report = await recoverStore(new ClassicLevel(positionals[0], { createIfMissing: false }) as never)
  console.log(report.text)
}

const [command, ...rest] = process.argv.slice(2)
try {
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    console.log(rest[0] !== undefined && usage[rest[0]] !== undefined ? usage[rest[0]] : usage.main)
  } else if (command === 'serve') {
    await serve(rest)
  } else if (command === 'keygen') {
    keygen(rest)
  } else if (command === 'status') {
    await status(rest)
  } else if (command === 'recover') {
    await recover(rest)
  } else {
    throw new UsageError(`unknown command '${command}'\n\n${usage.main}`)
  }
} catch (err) {
  const e = err as Error & { code?: string }
  if (err instanceof UsageError || e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ||
    e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') fail(`${e.message}`, 2)
  if (e.code === 'MIRROR_INVALID_OPTION') fail(inFlags(e.message), 2)
  fail(e.code !== undefined ? `${e.message} (${e.code})` : e.message)
}
