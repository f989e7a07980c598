import type { ReplicaOp } from '../adapter'
import type { InnerOp } from '../inner'

/**
 * The ops of the most recent seqs, as the pipeline committed them, within a byte budget: a
 * replica that keeps up is shipped `(w, t]` from here instead of reading back from LevelDB what
 * the pipeline just had in its hands. The net effect of consecutive seqs taken from their own ops
 * is the primary's state at `t` for every key they changed, exactly what a snapshot at `t` gives,
 * so the prefix guarantee is the same. A replica further behind than the tail reaches is shipped
 * from a snapshot, as before.
 */
export class ValueTail {
  #seqs: Array<{ seq: number, ops: InnerOp[], bytes: number }> = []
  #start = 0
  #bytes = 0
  #budget: number

  constructor (budget: number) {
    this.#budget = budget
  }

  /** How many seqs it holds, and their bytes as counted against the budget. */
  get size (): { seqs: number, bytes: number } {
    return { seqs: this.#seqs.length - this.#start, bytes: this.#bytes }
  }

  /** The last seq it holds (-1: none). */
  get head (): number {
    return this.#seqs.length > this.#start ? this.#seqs[this.#seqs.length - 1].seq : -1
  }

  /** Records the ops of `seq`; a seq that does not follow the last one starts the tail afresh. */
  push (seq: number, ops: InnerOp[], bytes: number): void {
    if (this.head !== -1 && seq !== this.head + 1) this.clear()
    this.#seqs.push({ seq, ops, bytes })
    this.#bytes += bytes
    while (this.#bytes > this.#budget && this.#start < this.#seqs.length - 1) this.#drop()
    this.#compact()
  }

  /** Whether it holds every seq after `watermark` up to its head (and at least one). */
  covers (watermark: number): boolean {
    return this.#seqs.length > this.#start && this.#seqs[this.#start].seq <= watermark + 1 && this.head > watermark
  }

  /**
   * The net effect of the seqs `(watermark, head]`: the last op of every key they touched, in key
   * order, and the seq it reaches. Only when `covers(watermark)`.
   */
  since (watermark: number): { to: number, ops: ReplicaOp[] } {
    const last = new Map<string, ReplicaOp>()
    for (let i = this.#start; i < this.#seqs.length; i++) {
      const entry = this.#seqs[i]
      if (entry.seq <= watermark) continue
      for (const op of entry.ops) last.set(op.key.toString('latin1'), op)
    }
    // The strings sort as the keys' bytes do (one char per byte), and far faster.
    const keys = [...last.keys()].sort()
    const ops = new Array<ReplicaOp>(keys.length)
    for (let i = 0; i < keys.length; i++) ops[i] = last.get(keys[i]) as ReplicaOp
    return { to: this.head, ops }
  }

  /** Forgets the seqs up to `seq` (every replica has them). */
  trim (seq: number): void {
    while (this.#start < this.#seqs.length && this.#seqs[this.#start].seq <= seq) this.#drop()
    this.#compact()
  }

  clear (): void {
    this.#seqs = []
    this.#start = 0
    this.#bytes = 0
  }

  #drop (): void {
    const entry = this.#seqs[this.#start++]
    this.#bytes -= entry.bytes
    // Its ops go now, not when the array is next cut: with large values, the 1024 seqs dropped
    // before a cut held gigabytes (a hostile trial: 3.2 GiB RSS with a 16 MiB tail).
    entry.ops = []
  }

  // Dropped entries are spliced off now and then, not one by one.
  #compact (): void {
    if (this.#start > 1024 && this.#start * 2 > this.#seqs.length) {
      this.#seqs = this.#seqs.slice(this.#start)
      this.#start = 0
    }
  }
}
