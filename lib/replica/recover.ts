import type { InnerDb } from '../inner'
import { ReplicaEngine } from './engine'
import { inspectStore, type StoreReport } from './inspect'

/** What `recoverStore` did, and the store as it is afterwards. */
export interface RecoveryReport {
  /** `applied`: a committed batch was applied; `dropped`: an uncommitted batch was discarded; `kept`: a staged full copy was kept for the primary to resume; `none`: nothing to do. */
  action: 'applied' | 'dropped' | 'kept' | 'none'
  after: StoreReport
  text: string
}

/**
 * Runs a replica's recovery on a closed store (`mirror-level recover`): a committed journal is
 * applied, an uncommitted incremental one dropped, an uncommitted full copy kept (the replica's
 * data is untouched by it). Afterwards plain `level` reads a real state of the primary. A primary's
 * or a plain store is left as it is. The db is closed at the end.
 */
export async function recoverStore (db: InnerDb): Promise<RecoveryReport> {
  let before: StoreReport
  try {
    before = await inspectStore(db)
  } catch (err) {
    await db.close()
    throw err
  }
  if (before.role !== 'replica') {
    await db.close()
    return { action: 'none', after: before, text: `nothing to recover: ${before.role === 'primary' ? 'a primary\'s store is always consistent' : 'not a mirror-level replica'}` }
  }
  await db.close()
  const engine = new ReplicaEngine(db)
  await engine.open()
  await engine.close()
  const after = await inspectStore(db)
  await db.close()
  const staged = before.replica!.staged
  const action = staged === null ? 'none' : staged.committed ? 'applied' : staged.full ? 'kept' : 'dropped'
  const what = {
    applied: `applied the committed batch: the replica is at seq ${after.replica!.watermark}`,
    dropped: `dropped an uncommitted batch to seq ${staged?.to ?? 0}: the replica stays at seq ${after.replica!.watermark}`,
    kept: `kept a staged full copy for the primary to resume; the replica's data is untouched by it (seq ${after.replica!.watermark})`,
    none: `nothing to recover: the replica is at seq ${after.replica!.watermark}`
  }[action]
  return { action, after, text: what }
}
