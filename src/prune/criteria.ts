import { UserError } from '../errors.js';
import type { Node } from '../ir/index.js';
import { constantOf, type ChannelGroup, type Space } from './groups.js';

export const CRITERIA = ['l1', 'l2', 'bn', 'fpgm', 'random', 'exemplar'] as const;
export type Criterion = (typeof CRITERIA)[number];

export function parseCriterion(name: string): Criterion {
  if ((CRITERIA as readonly string[]).includes(name)) return name as Criterion;
  throw new UserError(`unknown criterion '${name}' (choose one of ${CRITERIA.join(', ')})`);
}

/** The output filter of `node` that produces channel `p` of its output, as a flat vector. */
function filterOf(node: Node, p: number): Float64Array {
  const w = constantOf(node.inputs[1])!;
  const data = w.data as Float32Array;
  const d = w.dims;
  const op = node.opType;
  if (op === 'Conv' || (op === 'Gemm' && node.attrInt('transB', 0) === 1)) {
    const len = d.slice(1).reduce((a, b) => a * b, 1);
    return Float64Array.from(data.subarray(p * len, (p + 1) * len));
  }
  if (op === 'ConvTranspose') {
    const [cin, m] = [d[0]!, d[1]!];
    const k = d.slice(2).reduce((a, b) => a * b, 1);
    const out = new Float64Array(cin * k);
    for (let c = 0; c < cin; c++) for (let i = 0; i < k; i++) out[c * k + i] = data[(c * m + p) * k + i]!;
    return out;
  }
  // Gemm without transB and MatMul: B is [K, N], the filter is column p.
  const [kk, n] = [d[0]!, d[1]!];
  const out = new Float64Array(kk);
  for (let i = 0; i < kk; i++) out[i] = data[i * n + p]!;
  return out;
}

/** Per class, the concatenation of every producer's filter for it (zeros where a producer lacks the class). */
export function classVectors(group: ChannelGroup): Float64Array[] {
  const parts: { space: Space; filters: Float64Array[] }[] = group.producers.map(({ node, space }) => ({
    space,
    filters: Array.from({ length: space.size }, (_, p) => filterOf(node, p)),
  }));
  const dim = parts.reduce((a, part) => a + (part.filters[0]?.length ?? 0), 0);
  const vectors = Array.from({ length: group.size }, () => new Float64Array(dim));
  let offset = 0;
  for (const part of parts) {
    const len = part.filters[0]?.length ?? 0;
    part.filters.forEach((f, p) => {
      const v = vectors[part.space.classOf[p]!]!;
      for (let i = 0; i < len; i++) v[offset + i]! += f[i]!;
    });
    offset += len;
  }
  return vectors;
}

/** Mean |gamma| per class over every BN of the group; undefined when the group has no BN. */
export function bnClassScores(group: ChannelGroup): Float64Array | undefined {
  if (group.norms.length === 0) return undefined;
  const sum = new Float64Array(group.size);
  const count = new Float64Array(group.size);
  for (const { node, space } of group.norms) {
    const gamma = constantOf(node.inputs[1])!.toFloat64();
    for (let p = 0; p < space.size; p++) {
      sum[space.classOf[p]!]! += Math.abs(gamma[p]!);
      count[space.classOf[p]!]! += 1;
    }
  }
  return sum.map((s, c) => (count[c] ? s / count[c]! : 0));
}

function norms(vectors: Float64Array[], kind: 'l1' | 'l2'): Float64Array {
  return Float64Array.from(vectors, (v) => {
    let s = 0;
    for (const x of v) s += kind === 'l1' ? Math.abs(x) : x * x;
    return kind === 'l1' ? s : Math.sqrt(s);
  });
}

function sqDist(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    s += d * d;
  }
  return s;
}

/** A seeded 32-bit generator (mulberry32), so `random` plans are reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Affinity propagation (Frey & Dueck) on negative squared distances, preference = median similarity.
 * Returns the exemplar indices.
 */
export function affinityPropagation(vectors: Float64Array[], maxIter = 200, damping = 0.5): number[] {
  const n = vectors.length;
  if (n <= 1) return n ? [0] : [];
  const s = new Float64Array(n * n);
  const offDiag: number[] = [];
  for (let i = 0; i < n; i++)
    for (let k = 0; k < n; k++)
      if (i !== k) {
        s[i * n + k] = -sqDist(vectors[i]!, vectors[k]!);
        offDiag.push(s[i * n + k]!);
      }
  offDiag.sort((a, b) => a - b);
  const pref = offDiag[Math.floor(offDiag.length / 2)]!;
  for (let i = 0; i < n; i++) s[i * n + i] = pref;
  const r = new Float64Array(n * n);
  const a = new Float64Array(n * n);
  let last = '';
  let stable = 0;
  for (let it = 0; it < maxIter; it++) {
    for (let i = 0; i < n; i++) {
      let best = -Infinity;
      let second = -Infinity;
      let bestK = -1;
      for (let k = 0; k < n; k++) {
        const v = a[i * n + k]! + s[i * n + k]!;
        if (v > best) [second, best, bestK] = [best, v, k];
        else if (v > second) second = v;
      }
      for (let k = 0; k < n; k++) {
        const nr = s[i * n + k]! - (k === bestK ? second : best);
        r[i * n + k] = damping * r[i * n + k]! + (1 - damping) * nr;
      }
    }
    for (let k = 0; k < n; k++) {
      let sumPos = 0;
      for (let i = 0; i < n; i++) if (i !== k) sumPos += Math.max(0, r[i * n + k]!);
      for (let i = 0; i < n; i++) {
        const na = i === k ? sumPos : Math.min(0, r[k * n + k]! + sumPos - Math.max(0, r[i * n + k]!));
        a[i * n + k] = damping * a[i * n + k]! + (1 - damping) * na;
      }
    }
    const ex = exemplars();
    const key = ex.join(',');
    stable = key === last ? stable + 1 : 0;
    last = key;
    if (stable >= 15 && ex.length > 0) break;
  }
  const ex = exemplars();
  return ex.length ? ex : [0];

  function exemplars(): number[] {
    const out: number[] = [];
    for (let k = 0; k < n; k++) if (r[k * n + k]! + a[k * n + k]! > 0) out.push(k);
    return out;
  }
}

/** Orders by descending score, ties by index. */
function byScore(scores: ArrayLike<number>): number[] {
  return Array.from({ length: scores.length }, (_, i) => i).sort((i, j) => scores[j]! - scores[i]! || i - j);
}

/**
 * The keep priority of a group's classes under a criterion: the first w entries are the classes a width of w
 * keeps. `warn` is told once when a criterion has to fall back.
 */
export function classPriority(group: ChannelGroup, criterion: Criterion, seed: number, warn: (msg: string) => void): number[] {
  if (criterion === 'random') {
    const rand = seededRandom(seed * 7919 + group.id);
    const order = Array.from({ length: group.size }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    return order;
  }
  if (criterion === 'bn') {
    const scores = bnClassScores(group);
    if (scores) return byScore(scores);
    warn(`criterion bn: some groups have no BatchNormalization; they use l2 filter norms instead`);
    return byScore(norms(classVectors(group), 'l2'));
  }
  const vectors = classVectors(group);
  if (criterion === 'l1' || criterion === 'l2') return byScore(norms(vectors, criterion));
  if (criterion === 'fpgm') {
    // Filters near the geometric median are the most replaceable: keep those farthest from the others.
    const total = new Float64Array(vectors.length);
    for (let i = 0; i < vectors.length; i++)
      for (let j = i + 1; j < vectors.length; j++) {
        const d = Math.sqrt(sqDist(vectors[i]!, vectors[j]!));
        total[i]! += d;
        total[j]! += d;
      }
    return byScore(total);
  }
  // exemplar: exemplars first (by l2 norm), then the rest by l2 norm.
  const l2 = norms(vectors, 'l2');
  const ex = new Set(affinityPropagation(vectors));
  const order = byScore(l2);
  return [...order.filter((c) => ex.has(c)), ...order.filter((c) => !ex.has(c))];
}
