// The mirror-level command line: serve replicas, make keys, inspect, recover, promote, demote and
// restore stores. One file per group of commands; this one dispatches and reports errors.
import { UsageError, explain, fail } from './cli'
import { restoreCommand, restoreUsage } from './restore'
import { inFlags, keygen, keygenUsage, serve, serveUsage } from './serve'
import { demote, promote, recover, status, storeUsage } from './store'
import { verifyCommand, verifyUsage } from './verify'

const main = `mirror-level <command> [options]

Commands:
  serve     host replica databases for remote primaries (TcpReplica)
  keygen    print a new pre-shared key (32 random bytes, hex)
  status    show what a store directory holds (or, with --remote, a server), and whether plain
            level reads a real state
  recover   finish or drop a replica's half-applied batch, so plain level reads a real state
  restore   get a primary's store back from a replica directory or a server
  promote   make a replica the primary (the primary's machine is gone)
  demote    make an old primary a replica of the new one, saving the writes it would lose
  verify    prove a replica equals its primary, and mend only what differs

Run 'mirror-level <command> --help' for a command's options.`

const usage: Record<string, string> = { main, serve: serveUsage, keygen: keygenUsage, restore: restoreUsage, verify: verifyUsage, ...storeUsage }
const commands: Record<string, (argv: string[]) => unknown> = { serve, keygen, status, recover, promote, demote, restore: restoreCommand, verify: verifyCommand }

const [command, ...rest] = process.argv.slice(2)
try {
  if (command === undefined) {
    throw new UsageError(`a command is needed\n\n${usage.main}`)
  } else if (command === '--help' || command === '-h' || command === 'help') {
    console.log(rest[0] !== undefined && usage[rest[0]] !== undefined ? usage[rest[0]] : usage.main)
  } else if (commands[command] !== undefined) {
    await commands[command](rest)
  } else {
    throw new UsageError(`unknown command '${command}'\n\n${usage.main}`)
  }
} catch (err) {
  const e = err as Error & { code?: string }
  if (err instanceof UsageError || e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ||
    e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') fail(`${e.message}`, 2)
  if (e.code === 'MIRROR_INVALID_OPTION') fail(inFlags(e.message), 2)
  fail(explain(e))
}
