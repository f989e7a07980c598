import { existsSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { MirrorError, codes } from '../errors'
import { decodeHistory, describeHistory } from '../history'
import { BUFFERS, type InnerDb, checkDb, refuseMissingStore } from '../inner'
import { metaKeys } from '../keyspace'
import { storedHead } from '../log/records'
import { saveDiscarded } from './discarded'
import { encodeReplicaState } from './state'

export interface DemoteOptions {
  /** Where to save the writes this primary made that its new primary may never have had (see the README for the line format). */
  saveDiscarded?: string
  /** Drop those writes without saving them. One of the two is required: they are never dropped silently. */
  discard?: boolean
}

export interface DemoteReport {
  head: number
  /** Keys saved to the file (a superset until the store rejoins; see the README). */
  saved: number
  text: string
}

/**
 * Makes a closed primary store a replica that rejoins a new primary (`mirror-level demote`). First
 * the writes it may have made after the fork are saved (every key its log names, with its value),
 * durably; then, in one atomic batch, its primary state becomes a "demoted" replica state that
 * keeps its history, head and log. When a primary of the same line meets it, it ships the keys it
 * changed since the fork and the keys this store changed after it: no full copy. The data is not
 * touched until then. The db is closed at the end.
 */
export async function demoteStore (db: InnerDb, options: DemoteOptions = {}): Promise<DemoteReport> {
  checkDb('demote()', db)
  await refuseMissingStore('demote()', db)
  try {
    const { saveDiscarded: file, discard } = options ?? {}
    if ((file === undefined) === (discard !== true) || (file !== undefined && (typeof file !== 'string' || file.length === 0))) {
      throw new MirrorError('demote needs saveDiscarded (a file for the writes the new primary may not have) or discard: true: they are never dropped silently', codes.INVALID_OPTION)
    }
    const path = file === undefined ? null : resolve(file)
    if (path !== null && existsSync(path)) throw new MirrorError(`${path} exists; not overwriting saved writes`, codes.INVALID_OPTION)
    if (path !== null && !existsSync(dirname(path))) throw new MirrorError(`${dirname(path)} does not exist: the saved writes need a directory to go in`, codes.INVALID_OPTION)
    if (path !== null && !statSync(dirname(path)).isDirectory()) throw new MirrorError(`${dirname(path)} is not a directory: the saved writes need a directory to go in`, codes.INVALID_OPTION)
    await db.open()
    const [head, history, replica] = await db.getMany([metaKeys.head, metaKeys.history, metaKeys.replica], BUFFERS)
    if (replica !== undefined) throw new MirrorError('This store is already a replica: nothing to demote', codes.WRONG_ROLE)
    if (head === undefined || history === undefined) throw new MirrorError('This store is not a mirror-level primary: nothing to demote', codes.WRONG_ROLE)
    const h = (await storedHead({ db }))!.seq
    const hist = decodeHistory(history)
    const saved = path === null ? { keys: 0, exact: true, since: 0 } : await saveDiscarded(db, path, hist, h)
    await db.batch([
      { type: 'put', key: metaKeys.replica, value: encodeReplicaState({ generation: null, watermark: 0, history: null, demoted: { history: hist, head: h, saved: path } }) },
      { type: 'del', key: metaKeys.head },
      { type: 'del', key: metaKeys.history },
      { type: 'del', key: metaKeys.origin }
    ], BUFFERS)
    return {
      head: h,
      saved: saved.keys,
      text: `demoted: a replica waiting to rejoin a primary of its line (it was a primary at seq ${h}; history ${describeHistory(hist)})` +
        (path === null
          ? '\nits writes after the fork will be dropped when it rejoins (discard)'
          : saved.exact
            ? `\nsaved ${saved.keys} key(s) its log names to ${path}; when it rejoins, the file keeps exactly the writes after the fork`
            : `\nits log cannot name the keys it changed (it merged them): saved all ${saved.keys} key(s) it holds to ${path} (exact: false); a key it deleted after the fork is not in the file, so compare the file with the new primary`) +
        (path !== null && saved.since > 0 ? `\nits log names its writes after seq ${saved.since} only: if the new primary forked before that, the rejoin is a full copy, and every key this store holds is saved to the file first` : '')
    }
  } finally {
    await db.close()
  }
}
