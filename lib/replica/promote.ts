import { MirrorError, codes } from '../errors'
import { describeHistory, encodeHistory, newGeneration, type HistoryEntry } from '../history'
import { BUFFERS, type InnerDb, type InnerOp, checkDb, refuseMissingStore } from '../inner'
import { metaKeys } from '../keyspace'
import { encodeHead } from '../log/head'
import { ReplicaEngine } from './engine'
import { Journal } from './journal'
import { encodeOrigin, newOrigin } from '../origin'
import { decodeReplicaState } from './state'

/** What `promoteStore` did. */
export interface PromoteReport {
  /** The seq the new primary starts from: the replica's watermark. */
  seq: number
  /** Its history: the old primary's up to that seq, and the new generation. */
  history: HistoryEntry[]
  /** The replica kept no history (written by an older version): positions before the promotion cannot be checked. */
  approximate: boolean
  text: string
}

/**
 * Makes a closed replica store a primary (`mirror-level promote`): recovery first (a committed
 * batch is applied, anything uncommitted dropped), then, in one atomic batch, a primary's head at
 * the replica's watermark and a new generation after the old primary's history. The data is not
 * touched. Replicas of the old primary at that same position are accepted as its replicas and
 * continue from there; the old primary itself rejoins with `demoteStore`. The db is closed at the end.
 */
export async function promoteStore (db: InnerDb): Promise<PromoteReport> {
  checkDb('promote()', db)
  await refuseMissingStore('promote()', db)
  try {
    const engine = new ReplicaEngine(db)
    await engine.open()
    await engine.close()
    await db.open()
    const [raw, head, journal] = await db.getMany([metaKeys.replica, metaKeys.head, metaKeys.journal], BUFFERS)
    if (head !== undefined) throw new MirrorError('This store is already a primary: nothing to promote', codes.WRONG_ROLE)
    if (raw === undefined && journal !== undefined) throw new MirrorError('This replica was never synced (its first copy is not complete: its primary finishes it): it holds no state of a primary to promote', codes.WRONG_ROLE)
    if (raw === undefined) throw new MirrorError('This store is not a mirror-level replica: nothing to promote', codes.WRONG_ROLE)
    const state = decodeReplicaState(raw)
    if (state.demoted !== null) {
      throw new MirrorError('This store is a demoted primary waiting to rejoin its new primary; it holds no state of that line to promote', codes.WRONG_ROLE)
    }
    if (state.generation === null) throw new MirrorError('This replica was never synced: it holds no state of a primary to promote', codes.WRONG_ROLE)
    const approximate = state.history === null
    const before: HistoryEntry[] = state.history ?? [[state.generation, 0]]
    const history: HistoryEntry[] = [...before, [newGeneration(), state.watermark]]
    const origin = newOrigin(false, { promoted: { from: state.generation, seq: state.watermark } })
    const ops: InnerOp[] = [
      { type: 'put', key: metaKeys.head, value: encodeHead({ seq: state.watermark, logBytes: 0 }) },
      { type: 'put', key: metaKeys.history, value: encodeHistory(history) },
      { type: 'put', key: metaKeys.origin, value: encodeOrigin(origin) },
      { type: 'del', key: metaKeys.replica },
      { type: 'del', key: metaKeys.journal }
    ]
    await db.batch(ops, BUFFERS)
    await new Journal(db).clear() // an uncommitted full copy staged for resuming is of no use now
    return {
      seq: state.watermark,
      history,
      approximate,
      text: `promoted: a primary at seq ${state.watermark}, new generation ${history[history.length - 1][0]} (history: ${describeHistory(history)})` +
        (approximate ? '\nnote: this replica was written by a version that kept no history; the promoted store\'s positions before the promotion cannot be checked' : '')
    }
  } finally {
    await db.close()
  }
}
