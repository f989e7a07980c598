import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'
import { describe, expect, it } from 'vitest'

// DESIGN.md "Layout": each folder of lib/ is one role, and imports only point down.
const LEVEL: Record<string, number> = {
  '': 0, // shared: adapter, errors, inner, keyspace, options, user-ranges
  log: 1,
  replication: 2,
  replica: 2,
  device: 2,
  primary: 3,
  net: 3,
  recovery: 4
}

function files (dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : []
  })
}

function folderOf (file: string): string {
  return dirname(relative('lib', file)).replace(/^\.$/, '')
}

describe('layout', () => {
  const sources = files('lib')

  it('puts every file of lib/ in a known role folder', () => {
    for (const file of sources) expect(Object.keys(LEVEL), file).toContain(folderOf(file))
  })

  it('has no import that points up or sideways between roles', () => {
    const bad: string[] = []
    for (const file of sources) {
      const from = folderOf(file)
      for (const [, spec] of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
        const target = normalize(join(dirname(file), spec))
        if (!target.startsWith('lib/')) { bad.push(`${file} -> ${spec} (outside lib/)`); continue }
        const to = folderOf(target + '.ts')
        if (to !== from && LEVEL[to] >= LEVEL[from]) bad.push(`${file} -> ${spec}`)
      }
    }
    expect(bad).toEqual([])
  })
})
