import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const dirs: string[] = []
process.on('exit', () => {
  for (const dir of dirs) {
    try { rmSync(dir, { recursive: true, force: true, maxRetries: 3 }) } catch {}
  }
})

/** A temporary directory for one benchmark, removed when the process exits. */
export function benchDir (name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `mirror-level-bench-${name}-`))
  dirs.push(dir)
  return dir
}

export interface Measured {
  units: number
  seconds: number
}

/** Times `fn`, which returns how many units (ops, bytes) it did. */
export async function timed (fn: () => Promise<number>): Promise<Measured> {
  const t0 = process.hrtime.bigint()
  const units = await fn()
  return { units, seconds: Number(process.hrtime.bigint() - t0) / 1e9 }
}

export interface Side {
  name: string
  /**
   * One round of the workload. It times only the part that counts (with `timed`), so opening and
   * closing databases, and LevelDB's background compaction that closing waits for, stay out of it.
   */
  round: (round: number) => Promise<Measured>
}

/** Both sides' throughput in units per second, and each round's ratio of the second to the first. */
export type Rates = [number, number] & { ratios: number[] }

/**
 * Runs the sides' rounds alternately (A B, B A, A B, ...) so that drift of the machine hits both
 * alike, and returns each side's throughput in units per second, with the ratio of every round's
 * pair (the two runs next to each other in time).
 */
export async function alternate (sides: [Side, Side], rounds: number): Promise<Rates> {
  const seconds = [0, 0]
  const units = [0, 0]
  const ratios: number[] = []
  for (let r = 0; r < rounds; r++) {
    const rate = [0, 0]
    for (const i of r % 2 === 0 ? [0, 1] : [1, 0]) {
      const m = await sides[i].round(r)
      units[i] += m.units
      seconds[i] += m.seconds
      rate[i] = m.units / m.seconds
    }
    ratios.push(rate[1] / rate[0])
  }
  return Object.assign([units[0] / seconds[0], units[1] / seconds[1]] as [number, number], { ratios })
}

/** The median of `xs` (not empty). */
export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/** "median 1.02x of 8 rounds, 0.95-1.10x": how far single rounds moved from each other. */
export function spread (ratios: number[]): string {
  return `median ${median(ratios).toFixed(2)}x of ${ratios.length} rounds, ${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}x`
}

/** What a round measured, with the CPU time the process spent in it (every thread). */
export interface MeasuredCpu extends Measured {
  cpuSeconds: number
}

/** Times `fn` in wall-clock and in CPU time of this process (user + system, all threads). */
export async function timedCpu (fn: () => Promise<number>): Promise<MeasuredCpu> {
  const c0 = process.cpuUsage()
  const m = await timed(fn)
  const c = process.cpuUsage(c0)
  return { ...m, cpuSeconds: (c.user + c.system) / 1e6 }
}

/** A side's totals over its rounds of `rotate`, and each round's own measurement. */
export interface Rotated {
  rate: number
  cpuPerUnit: number
  rounds: MeasuredCpu[]
}

/**
 * Runs the rounds of several sides, rotating which goes first (A B C, B C A, C A B, ...), and
 * returns each side's units per second and CPU seconds per unit, with every round it ran.
 */
export async function rotate (sides: Array<{ name: string, round: (round: number) => Promise<MeasuredCpu> }>, rounds: number): Promise<Rotated[]> {
  const out: Rotated[] = sides.map(() => ({ rate: 0, cpuPerUnit: 0, rounds: [] }))
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < sides.length; k++) {
      const i = (r + k) % sides.length
      out[i].rounds.push(await sides[i].round(r))
    }
  }
  for (const o of out) {
    const sum = (f: (m: MeasuredCpu) => number): number => o.rounds.reduce((a, m) => a + f(m), 0)
    o.rate = sum((m) => m.units) / sum((m) => m.seconds)
    o.cpuPerUnit = sum((m) => m.cpuSeconds) / sum((m) => m.units)
  }
  return out
}

/** Per round, side `b`'s CPU per unit over side `a`'s (the rounds of one rotation ran side by side). */
export function cpuRatios (a: Rotated, b: Rotated): number[] {
  return a.rounds.map((m, r) => (b.rounds[r].cpuSeconds / b.rounds[r].units) / (m.cpuSeconds / m.units))
}

export function fmt (n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(1)
}

export interface Result {
  title: string
  ratio: number
  target: string
}

/** Prints one comparison; `ratios`, each round's own, show how much single rounds moved. */
export function report (title: string, unit: string, base: [string, number], ours: [string, number], target: string, ratios?: number[]): Result {
  const ratio = ours[1] / base[1]
  const rounds = ratios === undefined || ratios.length < 2 ? '' : ` (${spread(ratios)})`
  console.log(`${title}\n  ${base[0].padEnd(40)} ${fmt(base[1]).padStart(8)} ${unit}/s\n  ${ours[0].padEnd(40)} ${fmt(ours[1]).padStart(8)} ${unit}/s\n  ratio ${ratio.toFixed(2)}x${rounds} (target ${target})\n`)
  return { title, ratio, target }
}

// Keys are cut from one random pool: randomBytes() per key would cost more than the write.
const pool = randomBytes(1 << 24)
let at = 0

/** A fresh 16-byte random key. */
export function randomKey (): Buffer {
  if (at + 16 > pool.length) at = 0
  at += 16
  return Buffer.from(pool.subarray(at - 16, at))
}
