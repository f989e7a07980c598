import { MirrorError, codes, telling } from '../errors'
import { checkDb, refuseMissingStore, type InnerDb } from '../inner'
import { ReplicaEngine } from './engine'
import { inspectStore, type StoreReport } from './inspect'

/** What `recoverStore` did, and the store as it is afterwards. */
export interface RecoveryReport {
  /** `applied`: a committed batch was applied; `dropped`: an uncommitted batch was discarded; `kept`: a staged batch (a full copy, or an incremental batch that can resume) was kept for the primary to resume; `none`: nothing to do. */
  action: 'applied' | 'dropped' | 'kept' | 'none'
  after: StoreReport
  text: string
}

/**
 * Runs a replica's recovery on a closed store (`mirror-level recover`): a committed journal is
 * applied, an uncommitted one kept if its primary can resume it (a full copy, an incremental batch
 * whose parts were ordered) and dropped otherwise (the replica's
 * data is untouched by it). Afterwards plain `level` reads a real state of the primary. A primary's
 * or a plain store is left as it is. The db is closed at the end.
 */
export async function recoverStore (db: InnerDb): Promise<RecoveryReport> {
  checkDb('recover()', db)
  await refuseMissingStore('recover()', db)
  let before: StoreReport
  let salvaged = false
  try {
    before = await inspectStore(db)
  } catch (err) {
    await db.close()
    // LevelDB cannot read its own files (damaged tables): its repair keeps what can be read.
    if (telling(err) !== 'LEVEL_CORRUPTION' && (err as { code?: string }).code !== 'LEVEL_CORRUPTION') throw err
    const repair = (db as unknown as { constructor: { repair?: (location: string) => Promise<void> }, location?: unknown })
    if (typeof repair.constructor.repair !== 'function' || typeof repair.location !== 'string') throw err
    await repair.constructor.repair(repair.location)
    salvaged = true
    before = await inspectStore(db)
  }
  if (before.role === 'restoring') {
    await db.close()
    throw new MirrorError('An unfinished restore: run the same mirror-level restore again to complete it (recover does not finish restores)', codes.WRONG_ROLE)
  }
  if (before.role !== 'replica') {
    await db.close()
    const why = salvaged ? 'LevelDB reported corruption and its repair salvaged what could be read, but no replica state survived: give it to its primary with overwrite, or restore' : before.role === 'primary' ? 'a primary\'s store is always consistent' : 'not a mirror-level replica'
    return { action: 'none', after: before, text: `nothing to recover: ${why}` }
  }
  await db.close()
  const engine = new ReplicaEngine(db)
  await engine.open()
  await engine.close()
  const after = await inspectStore(db)
  await db.close()
  const staged = before.replica!.staged
  const action = staged === null ? 'none' : staged.committed ? 'applied' : after.replica?.staged !== null ? 'kept' : 'dropped'
  const what = {
    applied: `applied the committed batch: the replica is at seq ${after.replica!.watermark}`,
    dropped: `dropped an uncommitted batch to seq ${staged?.to ?? 0}: the replica stays at seq ${after.replica!.watermark}`,
    kept: staged?.inPlace === true
      ? 'kept a first copy written in place for the primary to resume: the replica was never synced, and its data is the copy\'s parts so far'
      : `kept a staged ${staged?.full === true ? 'full copy' : 'batch'} for the primary to resume; the replica's data is untouched by it (seq ${after.replica!.watermark})`,
    none: `nothing to recover: the replica is at seq ${after.replica!.watermark}`
  }[action]
  const note = salvaged ? '\nLevelDB reported corruption: its repair salvaged what could be read; verify the replica against its primary (mirror-level verify --repair) to mend what was lost' : ''
  return { action, after, text: what + note }
}
