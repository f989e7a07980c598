declare module 'abstract-level/test/index.js' {
  const suite: (options: { test: unknown, factory: (options?: Record<string, unknown>) => unknown }) => void
  export default suite
}
