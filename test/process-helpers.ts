import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const fixture = fileURLToPath(new URL('./fixtures/primary-process.ts', import.meta.url))

export interface PrimaryProcess {
  child: ChildProcess
  /** Every JSON line it printed (replica-batch and replica-down events). */
  events: Array<Record<string, unknown>>
  /** Resolves when it printed `line`. */
  saw: (line: string | RegExp) => Promise<void>
  /** Resolves with its exit code, or rejects with what it printed on stderr if it failed. */
  done: Promise<number | null>
}

/** Starts test/fixtures/primary-process.ts with `spec` (see there). */
export function startPrimary (spec: object): PrimaryProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] })
  const events: Array<Record<string, unknown>> = []
  const lines: string[] = []
  const waiters: Array<{ match: string | RegExp, resolve: () => void }> = []
  let out = ''
  let err = ''
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
    const parts = out.split('\n')
    out = parts.pop()!
    for (const line of parts) {
      lines.push(line)
      if (line.startsWith('{')) events.push(JSON.parse(line))
      for (const w of [...waiters]) {
        if (typeof w.match === 'string' ? line === w.match : w.match.test(line)) {
          waiters.splice(waiters.indexOf(w), 1)
          w.resolve()
        }
      }
    }
  })
  child.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  const done = new Promise<number | null>((resolve, reject) => {
    child.on('close', (code, signal) => {
      if (code === 0 || signal === 'SIGKILL') resolve(code)
      else reject(new Error(`primary process ended with ${code ?? signal}: ${err}`))
    })
  })
  done.catch(() => {})
  const saw = (match: string | RegExp): Promise<void> => {
    if (lines.some((l) => typeof match === 'string' ? l === match : match.test(l))) return Promise.resolve()
    return new Promise((resolve, reject) => {
      waiters.push({ match, resolve })
      done.then(() => reject(new Error(`primary process ended before printing ${String(match)}: ${err}`)), reject)
    })
  }
  return { child, events, saw, done }
}
