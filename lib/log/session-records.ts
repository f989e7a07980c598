import type { InnerOp } from '../inner'
import { logKey } from '../keyspace'

// At most this many sizes are kept (replicas down for long, or none to truncate for): the oldest
// are dropped, and truncating those reads the log again.
const MAX_KNOWN = 262_144

/** A truncation step: the deletes, the log's size after them, and the last seq they remove. */
export interface TruncationStep {
  ops: InnerOp[]
  logBytes: number
  through: number
}

/**
 * The sizes of the log records this open committed, one per seq under `logKey(seq)`, so that
 * truncating them needs no read back from the store of what the pipeline just wrote. Any doubt
 * (a gap in the seqs after a failed commit, a compaction that rewrote records) drops what is
 * known, and it starts again with the next commit; truncating records not known here reads the
 * log, as it does for the records of earlier opens.
 */
export class SessionRecords {
  // The seq of `#bytes[#at]`, or of the next commit while none is known.
  #first: number | null
  #bytes: number[] = []
  #at = 0

  /** `next`: the seq of the first commit of this open. */
  constructor (next: number) {
    this.#first = next
  }

  committed (seq: number, bytes: number): void {
    if (this.#first === null || seq !== this.#first + this.#known()) {
      this.#bytes = []
      this.#at = 0
      this.#first = seq
    }
    this.#bytes.push(bytes)
    if (this.#known() > MAX_KNOWN) this.#drop(1)
  }

  /** Records were rewritten (compaction): what is known here no longer matches the store. */
  forget (): void {
    this.#bytes = []
    this.#at = 0
    this.#first = null
  }

  /**
   * The next truncation step of `(after, upto]`, at most `max` records; null when nothing is left;
   * undefined when these records are not all known here (read the log instead).
   */
  truncation (logBytes: number, after: number, upto: number, max: number): TruncationStep | null | undefined {
    const first = this.#first
    if (upto <= after) return null
    if (first === null || after < first - 1 || upto > first + this.#known() - 1) return undefined
    // Records through `after` are deleted already.
    this.#drop(after - first + 1)
    const end = Math.min(upto, after + max)
    if (end <= after) return null
    const ops: InnerOp[] = []
    let bytes = 0
    for (let seq = after + 1; seq <= end; seq++) {
      ops.push({ type: 'del', key: logKey(seq) })
      bytes += this.#bytes[this.#at + seq - after - 1]
    }
    return { ops, logBytes: logBytes - bytes, through: end }
  }

  #known (): number {
    return this.#bytes.length - this.#at
  }

  #drop (n: number): void {
    if (n <= 0) return
    this.#at += n
    this.#first! += n
    // Now and then, so that the array does not grow with what is gone.
    if (this.#at > 4096 && this.#at * 2 > this.#bytes.length) {
      this.#bytes = this.#bytes.slice(this.#at)
      this.#at = 0
    }
  }
}
