import { UserError } from '../errors.js';
import { constantOf } from '../ir/index.js';
import type { ChannelGroup, FilterLayout, Space } from './groups.js';
import { float32Rows, readElements } from './tensor-data.js';
import { mulberry32 } from '../data/prng.js';

export const CRITERIA = ['l1', 'l2', 'bn', 'fpgm', 'random', 'exemplar'] as const;
export type Criterion = (typeof CRITERIA)[number];

export function parseCriterion(name: string): Criterion {
  if ((CRITERIA as readonly string[]).includes(name)) return name as Criterion;
  throw new UserError(`unknown criterion '${name}' (choose one of ${CRITERIA.join(', ')})`);
}

/** The weight data and where each filter lies in it (read once: see readElements, no decoded copy is cached). */
interface FilterData {
  data: Float32Array;
  layout: FilterLayout;
}

function filterData(layout: FilterLayout): FilterData {
  return { data: readElements(layout.weight) as Float32Array, layout };
}

/** A layout whose filters are the weight's consecutive rows (Conv, Gemm with transB): read row by row. */
function isRowMajor({ len, rowStep, stride, blocks }: FilterLayout): boolean {
  return !blocks && stride === 1 && rowStep === len;
}

/** Calls `fn(i, x)` for every element of the filter of output channel `p`, in filter order. */
function forEachInFilter(f: FilterData, p: number, fn: (i: number, x: number) => void): void {
  const { data } = f;
  const { len, rowStep, stride, blocks } = f.layout;
  if (blocks) {
    for (let c = 0, i = 0; c < blocks.count; c++)
      for (let j = 0, at = c * blocks.step + p * blocks.size; j < blocks.size; j++) fn(i++, data[at + j]!);
    return;
  }
  for (let i = 0, at = p * rowStep; i < len; i++, at += stride) fn(i, data[at]!);
}

/**
 * A group's per-class filter vectors (the concatenation of every producer's filter for the class; zeros where
 * a producer lacks it), computed once and shared by group importance and the criteria. The norms need no
 * vectors: they are sums over producers, read straight from the weights. Full vectors (fpgm, exemplar) are
 * built on first use.
 */
export class ClassFilters {
  private sums: { abs: Float64Array; sq: Float64Array } | undefined;
  private built: Float64Array[] | undefined;
  /** Length of a class vector. */
  readonly dim: number;

  constructor(readonly group: ChannelGroup) {
    this.dim = group.producers.reduce((a, { layout }) => a + layout.len, 0);
  }

  /** Per class, the l1 norm and the squared l2 norm of its vector. */
  norms(): { abs: Float64Array; sq: Float64Array } {
    if (this.sums) return this.sums;
    const n = this.group.size;
    const abs = new Float64Array(n);
    const sq = new Float64Array(n);
    for (const { layout, space } of this.group.producers) {
      if (hasRepeatedClass(space, n)) {
        // Positions sharing a class add up before the norm: build those sums.
        const part = this.partVectors(layout, space);
        part.forEach((v, c) => {
          for (const x of v) {
            abs[c]! += Math.abs(x);
            sq[c]! += x * x;
          }
        });
        continue;
      }
      const rowOf = isRowMajor(layout) ? float32Rows(layout.weight, layout.len) : undefined;
      const strided = rowOf ? undefined : filterData(layout);
      for (let p = 0; p < space.size; p++) {
        const [a, q] = rowOf ? rowNorms(rowOf(p)) : stridedNorms(strided!, p);
        const c = space.classOf[p]!;
        abs[c]! += a;
        sq[c]! += q;
      }
    }
    return (this.sums = { abs, sq });
  }

  /** Per class, the concatenated filter vector. */
  vectors(): Float64Array[] {
    if (this.built) return this.built;
    const vectors = Array.from({ length: this.group.size }, () => new Float64Array(this.dim));
    let offset = 0;
    for (const { layout, space } of this.group.producers) {
      const f = filterData(layout);
      for (let p = 0; p < space.size; p++) {
        const v = vectors[space.classOf[p]!]!;
        forEachInFilter(f, p, (i, x) => {
          v[offset + i]! += x;
        });
      }
      offset += layout.len;
    }
    return (this.built = vectors);
  }

  private partVectors(layout: FilterLayout, space: Space): Map<number, Float64Array> {
    const f = filterData(layout);
    const part = new Map<number, Float64Array>();
    for (let p = 0; p < space.size; p++) {
      const c = space.classOf[p]!;
      let v = part.get(c);
      if (!v) part.set(c, (v = new Float64Array(layout.len)));
      forEachInFilter(f, p, (i, x) => {
        v![i]! += x;
      });
    }
    return part;
  }
}

// Kept apart from any closure: accumulators a closure captures live on the heap, one allocation per add.
function rowNorms(row: Float32Array): [number, number] {
  // Four independent accumulators: one chain of dependent adds was the limit, not memory.
  let a0 = 0,
    a1 = 0,
    a2 = 0,
    a3 = 0,
    q0 = 0,
    q1 = 0,
    q2 = 0,
    q3 = 0;
  const n = row.length;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    const x0 = row[i]!,
      x1 = row[i + 1]!,
      x2 = row[i + 2]!,
      x3 = row[i + 3]!;
    a0 += Math.abs(x0);
    a1 += Math.abs(x1);
    a2 += Math.abs(x2);
    a3 += Math.abs(x3);
    q0 += x0 * x0;
    q1 += x1 * x1;
    q2 += x2 * x2;
    q3 += x3 * x3;
  }
  for (; i < n; i++) {
    const x = row[i]!;
    a0 += Math.abs(x);
    q0 += x * x;
  }
  return [a0 + a1 + a2 + a3, q0 + q1 + q2 + q3];
}

function stridedNorms(f: FilterData, p: number): [number, number] {
  const sums = [0, 0];
  forEachInFilter(f, p, (_, x) => {
    sums[0]! += Math.abs(x);
    sums[1]! += x * x;
  });
  return sums as [number, number];
}

function hasRepeatedClass(space: Space, classes: number): boolean {
  const seen = new Uint8Array(classes);
  for (const c of space.classOf) {
    if (seen[c]) return true;
    seen[c] = 1;
  }
  return false;
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

function norms(filters: ClassFilters, kind: 'l1' | 'l2'): Float64Array {
  const { abs, sq } = filters.norms();
  return kind === 'l1' ? abs : sq.map(Math.sqrt);
}

function sqDist(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    s += d * d;
  }
  return s;
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
export function classPriority(
  group: ChannelGroup,
  criterion: Criterion,
  seed: number,
  warn: (msg: string) => void,
  filters: ClassFilters = new ClassFilters(group),
): number[] {
  if (criterion === 'random') {
    const rand = mulberry32(seed * 7919 + group.id);
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
    return byScore(norms(filters, 'l2'));
  }
  if (criterion === 'l1' || criterion === 'l2') return byScore(norms(filters, criterion));
  const vectors = filters.vectors();
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
  const l2 = norms(filters, 'l2');
  const ex = new Set(affinityPropagation(vectors));
  const order = byScore(l2);
  return [...order.filter((c) => ex.has(c)), ...order.filter((c) => !ex.has(c))];
}
