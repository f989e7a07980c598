/** A Zipf(s) sampler over 0..n-1 (rank 0 most likely), by inverse CDF over a precomputed table. */
export function zipf (n: number, s: number, random: () => number = Math.random): () => number {
  const cdf = new Float64Array(n)
  let sum = 0
  for (let k = 0; k < n; k++) {
    sum += 1 / Math.pow(k + 1, s)
    cdf[k] = sum
  }
  // Scatter ranks over the device, so hot chunks are not all at its start.
  const place = new Uint32Array(n)
  for (let i = 0; i < n; i++) place[i] = i
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const t = place[i]; place[i] = place[j]; place[j] = t
  }
  return () => {
    const u = random() * sum
    let lo = 0
    let hi = n - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (cdf[mid] < u) lo = mid + 1
      else hi = mid
    }
    return place[lo]
  }
}
