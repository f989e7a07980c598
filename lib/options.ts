import { MirrorError, codes } from './errors'

/** Reads an optional positive safe integer option, refusing anything else with a coded error. */
export function positiveInteger (where: string, name: string, value: unknown, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new MirrorError(`${where}: option '${name}' must be a positive integer, got ${describe(value)}`, codes.INVALID_OPTION)
  }
  return value
}

/** Reads an optional non-negative safe integer option. */
export function nonNegativeInteger (where: string, name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new MirrorError(`${where}: option '${name}' must be a non-negative integer, got ${describe(value)}`, codes.INVALID_OPTION)
  }
  return value
}

export function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'bigint') return `${value}n`
  if (value === null || typeof value !== 'object') return String(value)
  return Array.isArray(value) ? 'an array' : 'an object'
}

/** A number option that must be at least `min`. */
export function atLeast (where: string, name: string, value: number, min: number): number {
  if (value < min) throw new MirrorError(`${where}: option '${name}' must be at least ${min}, got ${value}`, codes.INVALID_OPTION)
  return value
}

/** Refuses option names a function does not know (a typo would otherwise be ignored). */
export function knownOptions (where: string, options: object, known: readonly string[]): void {
  for (const name of Object.keys(options)) {
    if (!known.includes(name)) throw new MirrorError(`${where}: unknown option '${name}' (known: ${known.join(', ')})`, codes.INVALID_OPTION)
  }
}
