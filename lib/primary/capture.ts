import type { InnerOp } from '../inner'

// A batch's keys and values are copied into shared slabs rather than one Buffer each: a 4 KiB
// value copied alone costs an allocation that takes longer than the copy (2.0 against 0.65 µs per
// op for batches of 100). Slabs stay small, and no larger than what is left to copy, because an
// inner db that keeps the Buffers it is given (memory-level) keeps a whole slab for one live key.
const SLAB_BYTES = 64 * 1024
const OWN_BUFFER = SLAB_BYTES / 4

/** Copies of `ops`' keys and values, taken now: the caller may reuse its Buffers as soon as the call returns. */
export function captureOps (ops: ReadonlyArray<{ type: 'put', key: Uint8Array, value: Uint8Array } | { type: 'del', key: Uint8Array }>): InnerOp[] {
  // What is left to copy into slabs: buffers over OWN_BUFFER get their own and do not count.
  let left = 0
  const add = (b: Uint8Array): void => { if (b.length <= OWN_BUFFER) left += b.length }
  for (const op of ops) {
    add(op.key)
    if (op.type === 'put') add(op.value)
  }
  let slab = Buffer.alloc(0)
  let at = 0
  const copy = (b: Uint8Array): Buffer => {
    if (b.length > OWN_BUFFER) return Buffer.from(b)
    if (at + b.length > slab.length) {
      slab = Buffer.allocUnsafeSlow(Math.min(SLAB_BYTES, left))
      at = 0
    }
    slab.set(b, at)
    left -= b.length
    return slab.subarray(at, (at += b.length))
  }
  const out: InnerOp[] = new Array(ops.length)
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]
    out[i] = op.type === 'put' ? { type: 'put', key: copy(op.key), value: copy(op.value) } : { type: 'del', key: copy(op.key) }
  }
  return out
}
