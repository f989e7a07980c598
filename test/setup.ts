import { afterAll } from 'vitest'
import { stopServers } from './tcp-helpers'

// A test that fails half way does not stop the `serve` children it started: they go with its file.
afterAll(() => stopServers())
