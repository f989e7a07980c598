// Runs abstract-level's own test suite (tape) against MirrorLevel. Usage: suite.ts memory|classic
import test from 'tape'
import suite from 'abstract-level/test/index.js'
import { MemoryLevel } from 'memory-level'
import { ClassicLevel } from 'classic-level'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MirrorLevel } from '../../lib/primary/mirror-level'

const kind = process.argv[2]
const root = mkdtempSync(join(tmpdir(), 'mirror-level-compliance-'))
let n = 0

function inner () {
  if (kind === 'memory') return new MemoryLevel()
  if (kind === 'classic') return new ClassicLevel(join(root, `db${n++}`))
  throw new Error(`unknown inner db kind ${kind}`)
}

test.onFinish(() => rmSync(root, { recursive: true, force: true }))

suite({
  test,
  factory (options?: Record<string, unknown>) {
    return new MirrorLevel(inner(), options)
  }
})
