/** Wakes whoever waits on it. `wait(ms)` also returns after `ms`. */
export class Signal {
  #waiters = new Set<() => void>()

  wait (ms?: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined
      const done = (): void => {
        if (timer !== undefined) clearTimeout(timer)
        this.#waiters.delete(done)
        resolve()
      }
      this.#waiters.add(done)
      if (ms !== undefined && Number.isFinite(ms)) timer = setTimeout(done, Math.max(0, ms))
    })
  }

  notify (): void {
    for (const done of [...this.#waiters]) done()
  }
}

/** Exponential backoff with jitter: between half and all of min * 2^attempt, capped at max. */
export function backoff (attempt: number, min: number, max: number): number {
  const base = Math.min(max, min * 2 ** Math.min(attempt, 30))
  return base / 2 + Math.random() * (base / 2)
}
