/**
 * A byte budget shared by several holders (the connections of a server, the replica engines
 * behind it), so that what they hold together stays bounded. `tryTake` is for holders that have
 * somewhere else to go (a replica engine spills a large batch to its journal); `take` waits, for
 * holders that must hold the bytes to make progress (a frame being received).
 */
export class MemoryBudget {
  readonly total: number
  #used = 0
  #waiting: Array<{ bytes: number, resolve: () => void }> = []

  constructor (total: number) {
    this.total = total
  }

  get used (): number { return this.#used }

  tryTake (bytes: number): boolean {
    if (this.#waiting.length > 0 || this.#used + bytes > this.total) return false
    this.#used += bytes
    return true
  }

  /**
   * Waits until `bytes` fit, in request order. A request larger than the whole budget is granted
   * once nothing else is held, so one oversized holder still makes progress, alone.
   */
  take (bytes: number): Promise<void> {
    if (this.#waiting.length === 0 && this.#fits(bytes)) {
      this.#used += bytes
      return Promise.resolve()
    }
    return new Promise((resolve) => this.#waiting.push({ bytes, resolve }))
  }

  give (bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes)
    while (this.#waiting.length > 0 && this.#fits(this.#waiting[0].bytes)) {
      const next = this.#waiting.shift()!
      this.#used += next.bytes
      next.resolve()
    }
  }

  #fits (bytes: number): boolean {
    return this.#used + bytes <= this.total || this.#used === 0
  }
}
