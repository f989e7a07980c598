// The commands that work on a closed store directory: status, recover, promote, demote.
import { parseArgs } from 'node:util'
import { demoteStore } from '../lib/replica/demote'
import { inspectStore } from '../lib/replica/inspect'
import { promoteStore } from '../lib/replica/promote'
import { recoverStore } from '../lib/replica/recover'
import { UsageError, onePositional, withClosedStore } from './cli'
import { remoteStatus } from './remote'

export const storeUsage = {
  status: `mirror-level status DIR [--json]
mirror-level status --remote HOST:PORT --key-file FILE [--tls-ca FILE] [--json]

Shows what a directory holds: for a primary, its head, log size and generation history; for a
replica, its generation, watermark and any staged batch. Open it only while nothing else has it
open (classic-level takes a lock). With --json, 'consistent' is true exactly when the user data, as
it lies on disk, is a state the primary had (plain level then reads a real state).

With --remote, lists the resources of a mirror-level serve that the key may see: for each, what
the key may do, its watermark and generation, whether it is consistent, whether a primary streams
to it now, and when it last applied a batch.`,
  recover: `mirror-level recover DIR

Runs a replica's recovery on a closed replica directory: a batch that was committed but not fully
applied (the process died during it) is applied; an uncommitted one is kept for its primary to
resume (a full copy, or an incremental batch sent in key order) or else dropped. Afterwards plain level reads a real state of the primary.
Nothing to do for a primary's directory. Exits 0 when the directory is consistent afterwards, 1
when a replica's is not (a first copy written in place, kept for its primary to finish, or a
replica never synced: it holds no state of the primary yet).`,
  promote: `mirror-level promote DIR

Makes a replica directory a primary, for when the primary's machine is gone: recovery first, then
the primary's state at the replica's watermark, with a new generation after the old primary's
history. Its data is not touched. Stop whatever has DIR open first (mirror-level serve, or the
process with the LevelReplica). Then open it with MirrorLevel. The old primary, if it comes back,
rejoins with 'mirror-level demote'.`,
  demote: `mirror-level demote DIR (--save-discarded FILE | --discard)

Makes an old primary's directory a replica that rejoins its new primary (the promoted replica):
the writes it made that the new primary never had are saved to FILE first (JSON lines, see the
README, "Recovery"), then it waits, untouched, until the new primary meets it as a replica and
ships it only what differs. --discard drops those writes instead. They are never dropped silently.`
}

export async function status (argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, remote: { type: 'string' }, 'key-file': { type: 'string' }, 'tls-ca': { type: 'string' }, help: { type: 'boolean' } }
  })
  if (values.help === true) return void console.log(storeUsage.status)
  if (values.remote !== undefined) {
    if (positionals.length > 0) throw new UsageError('status --remote takes no directory')
    return await remoteStatus(values.remote, values['key-file'], values['tls-ca'], values.json === true)
  }
  const dir = onePositional(positionals, 'status')
  const report = await withClosedStore(dir, (db) => inspectStore(db))
  console.log(values.json === true ? JSON.stringify(report, null, 2) : report.text)
}

export async function recover (argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { help: { type: 'boolean' } } })
  if (values.help === true) return void console.log(storeUsage.recover)
  const dir = onePositional(positionals, 'recover')
  const report = await withClosedStore(dir, (db) => recoverStore(db))
  console.log(report.text)
  // A replica that holds no state of its primary yet (a first copy written in place and kept for
  // its primary to finish, or none at all) is not consistent afterwards.
  const after = report.after
  if (after.role === 'replica' && !after.consistent && after.replica?.demoted == null) process.exitCode = 1
}

export async function promote (argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { help: { type: 'boolean' } } })
  if (values.help === true) return void console.log(storeUsage.promote)
  const dir = onePositional(positionals, 'promote')
  console.log((await withClosedStore(dir, (db) => promoteStore(db))).text)
}

export async function demote (argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { 'save-discarded': { type: 'string' }, discard: { type: 'boolean' }, help: { type: 'boolean' } }
  })
  if (values.help === true) return void console.log(storeUsage.demote)
  const dir = onePositional(positionals, 'demote')
  if (values['save-discarded'] !== undefined && values.discard === true) throw new UsageError('demote takes --save-discarded FILE or --discard, not both')
  if (values['save-discarded'] === undefined && values.discard !== true) {
    throw new UsageError('demote needs --save-discarded FILE (where to keep the writes the new primary never had) or --discard')
  }
  const report = await withClosedStore(dir, (db) => demoteStore(db, { saveDiscarded: values['save-discarded'], discard: values.discard === true }))
  console.log(report.text)
}
