/**
 * Dense symmetric positive-definite solves for the least-squares re-fits (normal equations). Row-major
 * Float64Array matrices; n is at most a few thousand (C·k² of one convolution), so an O(n³/3) factorisation
 * in plain TypeScript costs milliseconds to a second and needs no native dependency.
 */

/**
 * Factorises the n×n SPD matrix `a` in place into its lower Cholesky factor L (a = L·Lᵀ; the strict upper
 * triangle is left as it was). Returns false when a pivot is not positive (the matrix is not SPD to working
 * precision), so that the caller can add a ridge and retry.
 */
export function choleskyInPlace(a: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    const rowJ = j * n;
    let d = a[rowJ + j]!;
    for (let k = 0; k < j; k++) d -= a[rowJ + k]! * a[rowJ + k]!;
    if (!(d > 0)) return false;
    const ljj = Math.sqrt(d);
    a[rowJ + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      const rowI = i * n;
      let s = a[rowI + j]!;
      for (let k = 0; k < j; k++) s -= a[rowI + k]! * a[rowJ + k]!;
      a[rowI + j] = s / ljj;
    }
  }
  return true;
}

/** Solves L·Lᵀ·X = B in place for the n×m right-hand sides B (row-major, n rows), given the factor L. */
export function choleskySolveInPlace(l: Float64Array, n: number, b: Float64Array, m: number): void {
  // Forward: L·Y = B.
  for (let i = 0; i < n; i++) {
    const rowI = i * n;
    for (let k = 0; k < i; k++) {
      const lik = l[rowI + k]!;
      if (lik === 0) continue;
      for (let c = 0; c < m; c++) b[i * m + c]! -= lik * b[k * m + c]!;
    }
    const lii = l[rowI + i]!;
    for (let c = 0; c < m; c++) b[i * m + c]! /= lii;
  }
  // Backward: Lᵀ·X = Y.
  for (let i = n - 1; i >= 0; i--) {
    for (let k = i + 1; k < n; k++) {
      const lki = l[k * n + i]!;
      if (lki === 0) continue;
      for (let c = 0; c < m; c++) b[i * m + c]! -= lki * b[k * m + c]!;
    }
    const lii = l[i * n + i]!;
    for (let c = 0; c < m; c++) b[i * m + c]! /= lii;
  }
}

/**
 * Solves (A + λ·I)·X = B + λ·P for SPD A (n×n), B and the prior P (n×m), all row-major; no argument is
 * modified. That is the ridge-regularised least squares pulled towards P instead of towards zero (with P the
 * current weights, a fit that cannot improve leaves them as they are). When the factorisation fails (A
 * singular to working precision), λ grows tenfold until it succeeds.
 */
export function solveSpd(
  a: Float64Array,
  n: number,
  b: Float64Array,
  m: number,
  ridge = 0,
  prior?: Float64Array,
): Float64Array {
  let lambda = ridge;
  const scale = meanDiagonal(a, n) || 1;
  for (let attempt = 0; attempt < 12; attempt++) {
    const l = Float64Array.from(a);
    for (let i = 0; i < n; i++) l[i * n + i]! += lambda;
    if (choleskyInPlace(l, n)) {
      const x = Float64Array.from(b);
      if (prior) for (let i = 0; i < x.length; i++) x[i]! += lambda * prior[i]!;
      choleskySolveInPlace(l, n, x, m);
      return x;
    }
    lambda = lambda > 0 ? lambda * 10 : scale * 1e-10;
  }
  throw new Error(`matrix of order ${n} is not positive definite even with a ridge of ${lambda}`);
}

export function meanDiagonal(a: Float64Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[i * n + i]!;
  return n ? s / n : 0;
}
