import type { GroupAnalysis, Space } from './groups.js';
import {
  roundingUnit,
  widthRule,
  type CostModel,
  type SearchResult,
  type WidthLimits,
} from './width-search.js';

/**
 * Plans a PyTorch module can follow (`prune --torch-compatible`, checked by `export-torch`). A channel Split into
 * equal consecutive parts, or a set of Slices tiling a tensor's channels in equal parts, is what torch's
 * `chunk(n, dim=1)` exports to (ShuffleNetV2): torch always cuts the pruned tensor into n equal parts again, so
 * the plan must keep as many channels in every part. The ONNX side has no such rule (it rewrites the sizes).
 */

/** One equal split: its parts, in channel order (all of one group, the input's). */
export interface EqualSplit {
  node: string;
  parts: Space[];
}

/** Every Split with equal outputs and every set of Slices tiling one input in equal parts, on the channel axis. */
export function equalSplits(analysis: GroupAnalysis): EqualSplit[] {
  const out: EqualSplit[] = [];
  const slices = new Map<Space, { start: number; output: Space; node: string }[]>();
  for (const r of analysis.records) {
    if (r.node.opType === 'Split') {
      const { outputs } = r.data as { outputs: Space[] };
      if (outputs.length > 1 && outputs.every((s) => s.size === outputs[0]!.size))
        out.push({ node: r.node.name, parts: outputs });
    } else if (r.node.opType === 'Slice') {
      const d = r.data as { input: Space; output: Space; start: number };
      const list = slices.get(d.input) ?? [];
      list.push({ start: d.start, output: d.output, node: r.node.name });
      slices.set(d.input, list);
    }
  }
  for (const [input, list] of slices) {
    if (list.length < 2) continue;
    const size = list[0]!.output.size;
    const sorted = [...list].sort((a, b) => a.start - b.start);
    // Each part once (torch's chunk slices every part exactly once); more than one Slice per part is not a chunk.
    if (
      sorted.length * size !== input.size ||
      sorted.some((s, i) => s.start !== i * size || s.output.size !== size)
    )
      continue;
    out.push({ node: sorted[0]!.node, parts: sorted.map((s) => s.output) });
  }
  return out;
}

/** The first equal split whose parts keep different channel counts under `keep`, described; undefined if none. */
export function unequalSplit(analysis: GroupAnalysis, keep: readonly Uint8Array[]): string | undefined {
  for (const split of equalSplits(analysis)) {
    const counts = split.parts.map((s) => {
      let n = 0;
      for (let p = 0; p < s.size; p++) n += keep[s.group]![s.classOf[p]!]!;
      return n;
    });
    if (counts.some((c) => c !== counts[0]))
      return `'${split.node}' cuts ${split.parts.length} equal parts of ${split.parts[0]!.size} channels, the plan keeps ${counts.join(' + ')}`;
  }
  return undefined;
}

/** Priorities whose prefixes at `boundaries` keep every equal split's parts equal, and the raised floors. */
export interface TiedPriorities {
  priorities: number[][];
  floors: number[];
  /** Per group, the widths (class counts) at which a prefix keeps equal parts; undefined: any width does. */
  boundaries: (number[] | undefined)[];
}

/**
 * Ties position j of every part of an equal split to position j of the first part (the same classes kept in
 * each part, so equal counts), as classes of a "tie": a tie is kept whole or not at all. Each group's priority
 * becomes its ties in order of their best class, each tie's classes together; the floors grow to whole ties.
 */
export function tieEqualSplits(
  analysis: GroupAnalysis,
  priorities: readonly number[][],
  floors: readonly number[],
): TiedPriorities {
  const parent = analysis.groups.map((g) => Int32Array.from({ length: g.size }, (_, i) => i));
  const find = (p: Int32Array, x: number): number => {
    while (p[x] !== x) x = p[x] = p[p[x]!]!;
    return x;
  };
  const tied = new Set<number>();
  for (const { parts } of equalSplits(analysis)) {
    const gi = parts[0]!.group;
    if (analysis.groups[gi]!.frozen.length) continue;
    tied.add(gi);
    const p = parent[gi]!;
    for (const s of parts.slice(1))
      for (let j = 0; j < s.size; j++) {
        const [a, b] = [find(p, parts[0]!.classOf[j]!), find(p, s.classOf[j]!)];
        if (a !== b) p[Math.max(a, b)] = Math.min(a, b);
      }
  }
  const out: TiedPriorities = { priorities: [...priorities], floors: [...floors], boundaries: [] };
  analysis.groups.forEach((_g, gi) => {
    if (!tied.has(gi)) return;
    const p = parent[gi]!;
    const members = new Map<number, number[]>();
    for (const c of priorities[gi]!) {
      const root = find(p, c);
      const list = members.get(root) ?? [];
      list.push(c);
      members.set(root, list);
    }
    // A Map iterates in insertion order: ties come in the order of their best-ranked class.
    const order = [...members.values()];
    out.priorities[gi] = order.flat();
    const boundaries: number[] = [];
    let total = 0;
    for (const list of order) boundaries.push((total += list.length));
    out.boundaries[gi] = boundaries;
    // The reserved classes (the first floors[gi] of the old priority) must all lie inside the new floor.
    const reserved = new Set(priorities[gi]!.slice(0, floors[gi]));
    let floor = 0;
    order.forEach((list, k) => {
      if (list.some((c) => reserved.has(c))) floor = boundaries[k]!;
    });
    out.floors[gi] = floor;
  });
  return out;
}

/**
 * Moves each tied group's searched width to a tie boundary (the largest at or under it that the width limits
 * allow, preferring multiples of the rounding; the smallest allowed one otherwise), then widens groups again,
 * the most pruned first, a tie (or a rounding step) at a time while the cost stays within the target.
 */
export function snapToTies(
  analysis: GroupAnalysis,
  costModel: CostModel,
  search: SearchResult,
  tied: TiedPriorities,
  limits: WidthLimits,
  budget: 'flops' | 'params',
): SearchResult {
  const { groups } = analysis;
  const key = budget === 'flops' ? 'macs' : 'params';
  const rules = groups.map((g, i) => widthRule(g.size, limits, tied.floors[i]));
  const widths = [...search.widths];
  groups.forEach((g, i) => {
    const b = tied.boundaries[i];
    if (!b || g.frozen.length) return;
    const lo = rules[i]!.lo;
    const under = b.filter((x) => x >= lo && x <= widths[i]!);
    const unit = roundingUnit(g.size, limits);
    const rounded = under.filter((x) => x % unit === 0);
    widths[i] = rounded.at(-1) ?? under.at(-1) ?? b.find((x) => x >= lo) ?? g.size;
  });
  const next = (i: number): number | undefined => {
    const g = groups[i]!;
    if (g.frozen.length || widths[i]! >= g.size) return undefined;
    const b = tied.boundaries[i];
    return b ? b.find((x) => x > widths[i]!) : Math.min(g.size, widths[i]! + rules[i]!.step);
  };
  let cost = costModel.cost(widths)[key];
  for (;;) {
    let best = -1;
    let bestCost = 0;
    for (let i = 0; i < groups.length; i++) {
      const w = next(i);
      if (w === undefined) continue;
      const prev = widths[i]!;
      widths[i] = w;
      const c = costModel.cost(widths)[key];
      widths[i] = prev;
      const fraction = prev / groups[i]!.size;
      if (c <= search.target && (best < 0 || fraction < widths[best]! / groups[best]!.size - 1e-12))
        [best, bestCost] = [i, c];
    }
    if (best < 0) break;
    widths[best] = next(best)!;
    cost = bestCost;
  }
  const achieved = costModel.cost(widths);
  const achievedRatio = achieved[key] / search.original[key];
  const note =
    cost > search.target
      ? `--torch-compatible: equal chunks need whole ties of channels; the narrowest such model keeps ${achievedRatio.toFixed(4)} of the original, over the target`
      : cost < search.target * 0.995
        ? `--torch-compatible: equal chunks need whole ties of channels; closest achievable under the target is ${achievedRatio.toFixed(4)} of the original`
        : undefined;
  const { note: _old, ...rest } = search;
  return { ...rest, widths, achieved, achievedRatio, ...(note ? { note } : {}) };
}
