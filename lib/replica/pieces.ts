import type { ReplicaOp } from '../adapter'
import type { InnerOp } from '../inner'

/** A large value whose pieces are arriving (puts of one key, all but the last marked `more`). */
export interface Piece {
  key: Buffer
  chunks: Buffer[]
}

/**
 * The next op of a batch as it is to be written: the whole value once its last piece comes, any
 * other op as it is, or null while a value's pieces go on (`state.piece` gathers them).
 */
export function wholeOp (state: { piece: Piece | null }, op: ReplicaOp): InnerOp | null {
  const piece = state.piece
  if (piece !== null) {
    piece.chunks.push((op as { value: Buffer }).value)
    if (op.type === 'put' && op.more === true) return null
    state.piece = null
    return { type: 'put', key: piece.key, value: Buffer.concat(piece.chunks) }
  }
  if (op.type === 'put' && op.more === true) {
    state.piece = { key: op.key, chunks: [op.value] }
    return null
  }
  return op.type === 'put' ? { type: 'put', key: op.key, value: op.value } : op
}
