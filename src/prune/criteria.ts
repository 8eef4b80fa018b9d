import { UserError } from '../errors.js';
import { constantOf } from '../ir/index.js';
import type { ChannelGroup, FilterLayout, GroupAnalysis, Space } from './groups.js';
import { float32Rows, readElements } from './tensor-data.js';
import { mulberry32 } from '../data/prng.js';

export const CRITERIA = ['l1', 'l2', 'bn', 'fpgm', 'random', 'exemplar', 'taylor'] as const;
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

/**
 * Calls `fn(at, i)` for every element of the filter of output channel `p`: `at` is its index in the weight's
 * data (or in anything of the weight's shape, such as its gradient), `i` its place in filter order.
 */
export function forEachFilterIndex(
  layout: FilterLayout,
  p: number,
  fn: (at: number, i: number) => void,
): void {
  const { len, rowStep, stride, blocks } = layout;
  if (blocks) {
    for (let c = 0, i = 0; c < blocks.count; c++)
      for (let j = 0, at = c * blocks.step + p * blocks.size; j < blocks.size; j++) fn(at + j, i++);
    return;
  }
  for (let i = 0, at = p * rowStep; i < len; i++, at += stride) fn(at, i);
}

/** Calls `fn(i, x)` for every element of the filter of output channel `p`, in filter order. */
function forEachInFilter(f: FilterData, p: number, fn: (i: number, x: number) => void): void {
  const { data } = f;
  forEachFilterIndex(f.layout, p, (at, i) => fn(i, data[at]!));
}

/** Filters laid out over one space of a group: a producer's output filters, or a reader's input columns. */
export interface ClassPart {
  space: Space;
  layout: FilterLayout;
}

/**
 * A group's per-class filter vectors: per class, the concatenation of every producer's filters for it (zeros
 * where a producer lacks the class). A class may own several positions of one producer (an attention head owns
 * its D rows of q, k and v): their filters are concatenated too, so a class's norm is the sum of its filters'.
 * `readers` are the input columns of the layers that read a multi-position class (a head's columns of the out
 * projection), which the l1/l2/fpgm/exemplar scores add (issue 30: a head whose output the projection ignores
 * is unimportant whatever its q/k/v rows); block importance reads the producers only. Computed once and shared by
 * group importance and the criteria; full vectors (fpgm, exemplar) are built on first use.
 */
export class ClassFilters {
  private sums: { abs: Float64Array; sq: Float64Array } | undefined;
  private readerSums: { abs: Float64Array; sq: Float64Array } | undefined;
  private built: Float64Array[] | undefined;
  /** Length of a class's vector over the producers (filters per class times their length). */
  readonly dim: number;

  constructor(
    readonly group: ChannelGroup,
    readonly readers: readonly ClassPart[] = [],
  ) {
    this.dim = group.producers.reduce((a, p) => a + p.layout.len * maxPositions(p.space, group.size), 0);
  }

  /** Per class, the l1 norm and the squared l2 norm of its producers' vector. */
  norms(): { abs: Float64Array; sq: Float64Array } {
    return (this.sums ??= partNorms(this.group.producers, this.group.size));
  }

  /** The same over the producers and the readers: what the l1 and l2 criteria rank by. */
  normsWithReaders(): { abs: Float64Array; sq: Float64Array } {
    if (this.readers.length === 0) return this.norms();
    if (this.readerSums) return this.readerSums;
    const own = this.norms();
    const more = partNorms(this.readers, this.group.size);
    return (this.readerSums = {
      abs: own.abs.map((x, c) => x + more.abs[c]!),
      sq: own.sq.map((x, c) => x + more.sq[c]!),
    });
  }

  /** Per class, the concatenated filter vector (producers, then readers). */
  vectors(): Float64Array[] {
    if (this.built) return this.built;
    const n = this.group.size;
    const parts = [...this.group.producers, ...this.readers];
    const dim = parts.reduce((a, p) => a + p.layout.len * maxPositions(p.space, n), 0);
    const vectors = Array.from({ length: n }, () => new Float64Array(dim));
    let offset = 0;
    for (const { layout, space } of parts) {
      const f = filterData(layout);
      const seen = new Int32Array(n);
      for (let p = 0; p < space.size; p++) {
        const c = space.classOf[p]!;
        const at = offset + seen[c]++ * layout.len;
        forEachInFilter(f, p, (i, x) => {
          vectors[c]![at + i] = x;
        });
      }
      offset += layout.len * maxPositions(space, n);
    }
    return (this.built = vectors);
  }
}

/** Per class, the summed l1 norms and squared l2 norms of the parts' filters at its positions. */
function partNorms(parts: readonly ClassPart[], classes: number): { abs: Float64Array; sq: Float64Array } {
  const abs = new Float64Array(classes);
  const sq = new Float64Array(classes);
  for (const { layout, space } of parts) {
    const rowOf = isRowMajor(layout) ? float32Rows(layout.weight, layout.len) : undefined;
    const strided = rowOf ? undefined : filterData(layout);
    for (let p = 0; p < space.size; p++) {
      const [a, q] = rowOf ? rowNorms(rowOf(p)) : stridedNorms(strided!, p);
      const c = space.classOf[p]!;
      abs[c]! += a;
      sq[c]! += q;
    }
  }
  return { abs, sq };
}

/** The most positions of `space` any one class owns (1 for a plain channel space, D for heads). */
function maxPositions(space: Space, classes: number): number {
  const count = new Int32Array(classes);
  let most = 0;
  for (const c of space.classOf) most = Math.max(most, ++count[c]!);
  return most;
}

/**
 * Input-column layouts of the layers that read a group whose classes are blocks of positions (a class owns
 * several positions of some space: attention heads of D channels, Swin's merged 2x2 patches): the readers
 * `ClassFilters` adds for those groups only, so a plain channel group scores by its producers as before. A
 * linear use's weight slice at input position p on its `inAxis` is `before` runs of `after` values,
 * `dims[inAxis]·after` apart.
 */
export function multiPositionReaders(analysis: GroupAnalysis): ClassPart[][] {
  const blocky = analysis.groups.map(
    (g) => !g.frozen.length && g.spaces.some((sp) => maxPositions(sp, g.size) > 1),
  );
  const readers: ClassPart[][] = analysis.groups.map(() => []);
  for (const r of analysis.records) {
    const use = r.op.linearUse?.(r.node, r.data);
    if (!use || typeof use === 'string' || !blocky[use.input.group]) continue;
    const weight = constantOf(r.node.inputs[use.weight]);
    if (!weight) continue;
    const dims = weight.dims;
    const before = dims.slice(0, use.inAxis).reduce((a, b) => a * b, 1);
    const after = dims.slice(use.inAxis + 1).reduce((a, b) => a * b, 1);
    const blocks = { count: before, step: dims[use.inAxis]! * after, size: after };
    const layout: FilterLayout =
      before === 1
        ? { weight, len: after, rowStep: after, stride: 1 }
        : { weight, len: before * after, rowStep: 0, stride: 0, blocks };
    readers[use.input.group]!.push({ space: use.input, layout });
  }
  return readers;
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
  const { abs, sq } = filters.normsWithReaders();
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
