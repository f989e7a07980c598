import { BUFFERS, type InnerDb } from '../inner'
import { HEAD_KEY, decodeHead } from '../log/head'
import { metaKey } from '../keyspace'
import { unpackState } from './part-codec'

/** What `mirror-level status` reports about a primary's or a replica's directory. */
export interface StoreReport {
  role: 'primary' | 'replica' | 'plain'
  primary?: { head: number, logBytes: number, history: Array<[string, number]>, preexisting: boolean }
  replica?: { generation: string | null, watermark: number, staged: { to: number, parts: number, full: boolean, committed: boolean } | null }
  text: string
}

/** Reads mirror-level's reserved keys of an open db (without changing anything). */
export async function inspectStore (db: InnerDb): Promise<StoreReport> {
  await db.open()
  const [head, history, origin, state, journal] = await db.getMany(
    [HEAD_KEY, metaKey('history'), metaKey('origin'), metaKey('replica'), metaKey('journal')], BUFFERS)
  if (head !== undefined && history !== undefined) {
    const h = decodeHead(head)
    const hist = unpackState<Array<[string, number]>>(history, 'history')
    const o = origin === undefined ? null : unpackState<{ preexisting: boolean }>(origin, 'origin')
    return {
      role: 'primary',
      primary: { head: h.seq, logBytes: h.logBytes, history: hist, preexisting: o?.preexisting ?? false },
      text: `primary: head seq ${h.seq}, log ${h.logBytes} bytes, generation ${hist[hist.length - 1][0]} (history: ${hist.map(([g, s]) => `${g.slice(0, 8)}@${s}`).join(', ')})`
    }
  }
  if (state !== undefined || journal !== undefined) {
    const st = state === undefined ? { generation: null, watermark: 0 } : unpackState<{ generation: string | null, watermark: number }>(state, 'replica state')
    const j = journal === undefined ? null : unpackState<{ to: number, parts: number, full: boolean, committed: boolean }>(journal, 'journal')
    const staged = j === null ? null : { to: j.to, parts: j.parts, full: j.full, committed: j.committed }
    const text = `replica: generation ${st.generation ?? '(never synced)'}, watermark ${st.watermark}` +
      (staged === null ? '' : `; staged ${staged.full ? 'full copy' : 'batch'} to seq ${staged.to}, ${staged.parts} part(s), ${staged.committed ? 'committed (applied on next open)' : 'not committed'}`)
    return { role: 'replica', replica: { generation: st.generation, watermark: st.watermark, staged }, text }
  }
  return { role: 'plain', text: 'no mirror-level state: a plain store' }
}
