import { BUFFERS, type InnerDb } from '../inner'
import { storedHead } from '../log/records'
import { metaKeys } from '../keyspace'
import { unpackState } from './part-codec'
import { NEVER_SYNCED, decodeJournal, decodeReplicaState } from './state'

/** What `mirror-level status` reports about a primary's or a replica's directory. */
export interface StoreReport {
  role: 'primary' | 'replica' | 'restoring' | 'plain'
  /**
   * The user data outside the reserved range is, as it lies on disk, a state the primary had, so
   * plain `level` reads a real state. False for a replica while a committed batch waits to be
   * applied (run `mirror-level recover`), for a replica never synced, and for a plain store.
   */
  consistent: boolean
  primary?: { head: number, logBytes: number, history: Array<[string, number]>, preexisting: boolean }
  replica?: { generation: string | null, watermark: number, staged: { to: number, parts: number, full: boolean, committed: boolean, applying: boolean, inPlace: boolean } | null, demoted?: { head: number } | null }
  text: string
}

/** Reads mirror-level's reserved keys of an open db (without changing anything). */
export async function inspectStore (db: InnerDb): Promise<StoreReport> {
  await db.open()
  const [head, history, origin, state, journal, restoring] = await db.getMany(
    [metaKeys.head, metaKeys.history, metaKeys.origin, metaKeys.replica, metaKeys.journal, metaKeys.restore], BUFFERS)
  if (restoring !== undefined) {
    const r = unpackState<{ source: { watermark: number }, entries: number }>(restoring, 'restore state')
    return { role: 'restoring', consistent: false, text: `an unfinished restore (of a replica at seq ${r.source.watermark}, ${r.entries} entries copied so far): run the same mirror-level restore again to complete it` }
  }
  if (state !== undefined || journal !== undefined) {
    const st = state === undefined ? NEVER_SYNCED : decodeReplicaState(state)
    const j = journal === undefined ? null : decodeJournal(journal)
    const staged = j === null ? null : { to: j.to, parts: j.parts, full: j.full, committed: j.committed, applying: j.applying, inPlace: j.inPlace }
    // A committed batch whose apply has not begun has not touched the data yet: it is applied on the next open.
    const mixed = staged !== null && staged.committed && staged.applying
    const consistent = st.generation !== null && !mixed
    const why = mixed
      ? `NOT consistent: a batch to seq ${staged.to} was being applied when the process stopped; run \`mirror-level recover\` on this directory before reading it with plain level`
      : st.demoted !== null ? `a demoted primary (it was a primary at seq ${st.demoted.head}): it rejoins when a primary of its line meets it as a replica`
        : staged?.inPlace === true ? 'NOT consistent: never synced, its first copy is half written (its primary resumes it; plain level would read part of a copy)'
          : st.generation === null ? 'NOT consistent: never synced, it holds no state of a primary yet' : 'consistent: plain level reads a real state of the primary'
    const text = `replica: generation ${st.generation ?? '(none)'}, watermark ${st.watermark}` +
      (staged === null ? '' : `; staged ${staged.full ? 'full copy' : 'batch'} to seq ${staged.to}, ${staged.parts} part(s), ${staged.inPlace ? 'written in place (the data holds the parts so far)' : !staged.committed ? 'not committed (the data is untouched by it)' : mixed ? 'being applied' : 'committed, to be applied on the next open (the data is untouched by it yet)'}`) +
      `\n${why}`
    return { role: 'replica', consistent, replica: { generation: st.generation, watermark: st.watermark, staged, demoted: st.demoted === null ? null : { head: st.demoted.head } }, text }
  }
  if (head !== undefined && history !== undefined) {
    const h = (await storedHead({ db }))!
    const hist = unpackState<Array<[string, number]>>(history, 'history')
    const o = origin === undefined ? null : unpackState<{ preexisting: boolean }>(origin, 'origin')
    return {
      role: 'primary',
      consistent: true,
      primary: { head: h.seq, logBytes: h.logBytes, history: hist, preexisting: o?.preexisting ?? false },
      text: `primary: head seq ${h.seq}, log ${h.logBytes} bytes, generation ${hist[hist.length - 1][0]} (history: ${hist.map(([g, s]) => `${g.slice(0, 8)}@${s}`).join(', ')})`
    }
  }
  return { role: 'plain', consistent: false, text: 'no mirror-level state: a plain store' }
}
