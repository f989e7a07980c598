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

/**
 * Runs the sides' rounds alternately (A B, B A, A B, ...) so that drift of the machine hits both
 * alike, and returns each side's throughput in units per second.
 */
export async function alternate (sides: [Side, Side], rounds: number): Promise<[number, number]> {
  const seconds = [0, 0]
  const units = [0, 0]
  for (let r = 0; r < rounds; r++) {
    for (const i of r % 2 === 0 ? [0, 1] : [1, 0]) {
      const m = await sides[i].round(r)
      units[i] += m.units
      seconds[i] += m.seconds
    }
  }
  return [units[0] / seconds[0], units[1] / seconds[1]]
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

/**
 * Runs the rounds of several sides, rotating which goes first (A B C, B C A, C A B, ...), and
 * returns each side's units per second and CPU seconds per unit.
 */
export async function rotate (sides: Array<{ name: string, round: (round: number) => Promise<MeasuredCpu> }>, rounds: number): Promise<Array<{ rate: number, cpuPerUnit: number }>> {
  const totals = sides.map(() => ({ units: 0, seconds: 0, cpu: 0 }))
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < sides.length; k++) {
      const i = (r + k) % sides.length
      const m = await sides[i].round(r)
      totals[i].units += m.units
      totals[i].seconds += m.seconds
      totals[i].cpu += m.cpuSeconds
    }
  }
  return totals.map((t) => ({ rate: t.units / t.seconds, cpuPerUnit: t.cpu / t.units }))
}

export function fmt (n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(1)
}

export interface Result {
  title: string
  ratio: number
  target: string
}

export function report (title: string, unit: string, base: [string, number], ours: [string, number], target: string): Result {
  const ratio = ours[1] / base[1]
  console.log(`${title}\n  ${base[0].padEnd(40)} ${fmt(base[1]).padStart(8)} ${unit}/s\n  ${ours[0].padEnd(40)} ${fmt(ours[1]).padStart(8)} ${unit}/s\n  ratio ${ratio.toFixed(2)}x (target ${target})\n`)
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
