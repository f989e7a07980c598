import { defineConfig } from 'tsup'

export default defineConfig([
  {
    entry: { index: 'index.ts' },
    format: ['esm', 'cjs'],
    dts: true,
    clean: true,
    sourcemap: true,
    target: 'node20'
  },
  {
    entry: { 'mirror-level': 'bin/mirror-level.ts' },
    outDir: 'dist/bin',
    format: ['esm'],
    sourcemap: true,
    target: 'node20',
    banner: { js: '#!/usr/bin/env node' }
  }
])
