import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'

const cli = fileURLToPath(new URL('../bin/mirror-level.ts', import.meta.url))

export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo
      s.close(() => resolve(port))
    })
  })
}

// Servers a test started and did not stop (it failed half way), for test/setup.ts to stop.
const running = new Set<ChildProcess>()

/** Kills every server `startServer` started that is still running. */
export function stopServers (): void {
  for (const child of running) child.kill('SIGKILL')
}

/** Starts `mirror-level serve` in a child process and resolves once it listens. */
export function startServer (args: string[]): Promise<{ child: ChildProcess, port: number, stderr: () => string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', cli, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    running.add(child)
    child.once('exit', () => running.delete(child))
    let out = ''
    let err = ''
    child.stdout!.on('data', (d) => {
      out += d
      const m = /listening on [^:]+:(\d+)/.exec(out)
      if (m !== null) resolve({ child, port: Number(m[1]), stderr: () => err })
    })
    child.stderr!.on('data', (d) => { err += d })
    child.on('error', reject)
    child.on('exit', (code) => reject(new Error(`server exited with ${code} before listening: ${err}`)))
  })
}

/** Runs the CLI to completion. */
export function runCli (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** Resolves once a child's stdout and stderr are read to the end ('exit' may come before them). */
export function drained (child: ChildProcess): Promise<void> {
  if (child.stdout?.destroyed !== false && child.stderr?.destroyed !== false) return Promise.resolve()
  return new Promise((resolve) => child.once('close', () => resolve()))
}

export function exited (child: ChildProcess): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode })
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
}

/**
 * A TCP proxy for fault injection between a primary and a server: it can cut each connection
 * after a number of bytes, delay and throttle traffic, swallow it (a black hole) or refuse
 * connections outright.
 */
export class FaultProxy {
  mode: 'pass' | 'refuse' | 'blackhole' = 'pass'
  /** Cut each new connection after this many bytes (both directions); null: never. */
  cutAfter: (() => number) | null = null
  delayMs = 0
  bytesPerSecond = 0
  cuts = 0
  #server: Server
  #sockets = new Set<Socket>()

  constructor (private target: number) {
    this.#server = createServer((client) => this.#accept(client))
  }

  listen (): Promise<number> {
    return new Promise((resolve) => this.#server.listen(0, '127.0.0.1', () => resolve((this.#server.address() as AddressInfo).port)))
  }

  /** Ends every open connection (as a network failure would). */
  dropAll (): void {
    for (const s of this.#sockets) s.destroy()
  }

  close (): Promise<void> {
    this.dropAll()
    return new Promise((resolve) => this.#server.close(() => resolve()))
  }

  #accept (client: Socket): void {
    if (this.mode === 'refuse') return void client.destroy()
    const server = connect(this.target, '127.0.0.1')
    this.#sockets.add(client)
    this.#sockets.add(server)
    const limit = this.cutAfter?.() ?? Infinity
    let moved = 0
    const end = (): void => {
      client.destroy()
      server.destroy()
      this.#sockets.delete(client)
      this.#sockets.delete(server)
    }
    const pipe = (from: Socket, to: Socket): void => {
      from.on('data', (chunk: Buffer) => {
        if (this.mode === 'blackhole') return
        if (moved + chunk.length > limit) {
          const keep = chunk.subarray(0, Math.max(0, limit - moved))
          if (keep.length > 0) to.write(keep)
          this.cuts++
          return end()
        }
        moved += chunk.length
        if (this.delayMs === 0 && this.bytesPerSecond === 0) return void to.write(chunk)
        from.pause()
        const wait = this.delayMs + (this.bytesPerSecond > 0 ? (chunk.length / this.bytesPerSecond) * 1000 : 0)
        setTimeout(() => {
          if (!to.destroyed) to.write(chunk)
          from.resume()
        }, wait)
      })
      from.on('error', end)
      from.on('close', end)
    }
    pipe(client, server)
    pipe(server, client)
  }
}
