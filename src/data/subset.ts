import { mixSeed, mulberry32, shuffle } from './prng.js';

/**
 * `count` sample indices with the classes as equal as they can be (a class with too few samples gives its
 * share to the others), chosen by `seed`. Returned ascending, so a subset reads the data in its natural order.
 */
export function balancedSubset(labels: Int32Array, count: number, seed: number): Int32Array {
  const byClass = indicesByClass(labels).map((indices, c) => shuffle(indices, mulberry32(mixSeed(seed, c))));
  const quota = new Array<number>(byClass.length).fill(0);
  let left = Math.min(count, labels.length);
  // Hand out one sample per class per round, in a seeded class order, until the count is met.
  const classOrder = shuffle(
    byClass.map((_, c) => c),
    mulberry32(mixSeed(seed, -1)),
  );
  while (left > 0) {
    for (const c of classOrder) {
      if (left > 0 && quota[c]! < byClass[c]!.length) {
        quota[c]!++;
        left--;
      }
    }
  }
  const chosen = byClass.flatMap((indices, c) => indices.slice(0, quota[c]));
  return Int32Array.from(chosen).sort();
}

/** A class-balanced held-out split of `holdoutCount` samples (e.g. for calibration) and the rest. */
export function holdoutSplit(
  labels: Int32Array,
  holdoutCount: number,
  seed: number,
): { rest: Int32Array; holdout: Int32Array } {
  const holdout = balancedSubset(labels, holdoutCount, seed);
  const inHoldout = new Uint8Array(labels.length);
  for (const i of holdout) inHoldout[i] = 1;
  const rest = new Int32Array(labels.length - holdout.length);
  let k = 0;
  for (let i = 0; i < labels.length; i++) if (!inHoldout[i]) rest[k++] = i;
  return { rest, holdout };
}

/** All indices 0..n-1 in a seeded random order (e.g. an epoch's order). */
export function shuffledIndices(n: number, seed: number): Int32Array {
  const indices = new Int32Array(n);
  for (let i = 0; i < n; i++) indices[i] = i;
  return shuffle(indices, mulberry32(seed));
}

/** The first `limit` of a seeded shuffle of 0..n-1, in ascending order, or undefined (all) without a limit. */
export function seededSubset(n: number, limit: number | undefined, seed: number): Int32Array | undefined {
  if (limit === undefined) return undefined;
  return shuffledIndices(n, seed).slice(0, Math.min(limit, n)).sort();
}

function indicesByClass(labels: Int32Array): number[][] {
  const byClass: number[][] = [];
  labels.forEach((label, i) => (byClass[label] ??= []).push(i));
  for (let c = 0; c < byClass.length; c++) byClass[c] ??= [];
  return byClass;
}
