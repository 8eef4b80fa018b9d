import { BudgetUnreachableError, UserError } from '../errors.js';
import type { GroupAnalysis, Space } from './groups.js';

export interface Cost {
  macs: number;
  params: number;
}

/**
 * Analytic cost of a pruned model without rewriting it: every Conv/Gemm/MatMul/BN term is a coefficient times
 * the kept counts of the spaces it spans, and a space's kept count at width w is the number of its positions
 * whose class is among the group's first w classes in keep-priority order.
 */
export class CostModel {
  private readonly keptAt: Int32Array[];

  constructor(
    private readonly analysis: GroupAnalysis,
    priorities: number[][],
  ) {
    this.keptAt = analysis.spaces.map((s) => {
      const rank = new Int32Array(analysis.groups[s.group]!.size);
      priorities[s.group]!.forEach((c, r) => (rank[c] = r));
      const cum = new Int32Array(rank.length + 1);
      for (let p = 0; p < s.size; p++) cum[rank[s.classOf[p]!]! + 1]! += 1;
      for (let w = 1; w < cum.length; w++) cum[w]! += cum[w - 1]!;
      return cum;
    });
  }

  cost(widths: readonly number[]): Cost {
    return this.evaluate((s) => this.keptAt[s.id]![widths[s.group]!]!);
  }

  /** Cost when each group keeps exactly the classes marked in `keep` (any subset, not only a priority prefix). */
  costOfKeep(keep: readonly Uint8Array[]): Cost {
    const counts = this.analysis.spaces.map((s) => {
      let n = 0;
      for (let p = 0; p < s.size; p++) n += keep[s.group]![s.classOf[p]!]!;
      return n;
    });
    return this.evaluate((s) => counts[s.id]!);
  }

  private evaluate(count: (s: Space) => number): Cost {
    const cost = { macs: 0, params: 0 };
    for (const term of this.analysis.costs) {
      let v = term.coef;
      for (const s of term.spaces) v *= count(s);
      cost[term.kind] += v;
    }
    return cost;
  }
}

export interface SearchOptions {
  budget: 'flops' | 'params';
  /** Fraction of the original cost to keep, in (0, 1]. */
  ratio: number;
  uniform: boolean;
  roundTo: number;
  /** Coarser rounding for wide groups (roundingUnit); none by default, so --round-to N means N everywhere. */
  wide?: WideRounding;
  minChannels: number;
  minFraction: number;
  /**
   * Per group, the fewest classes that give every member its minimum (see reserveBranchMinimums); raises the
   * group's narrowest width.
   */
  floors?: readonly number[];
}

export interface SearchResult {
  widths: number[];
  knob: number;
  steps: number;
  msPerStep: number;
  fillSteps: number;
  original: Cost;
  achieved: Cost;
  target: number;
  /** achieved / original of the budgeted quantity. */
  achievedRatio: number;
  /** Set when the result is not within 0.5% under the target. */
  note?: string;
}

const TOLERANCE = 0.005;

export type WidthLimits = Pick<SearchOptions, 'roundTo' | 'wide' | 'minChannels' | 'minFraction'>;

/** Groups of at least `channels` channels round to multiples of `roundTo` instead of the plain unit. */
export interface WideRounding {
  channels: number;
  roundTo: number;
}

/**
 * The channel multiple a group of `size` channels keeps: `wide.roundTo` where the group is wide and a multiple
 * of it (so its full width stays reachable) and that unit is a multiple of the plain one, else the plain unit.
 */
export function roundingUnit(size: number, opts: Pick<WidthLimits, 'roundTo' | 'wide'>): number {
  const n = Math.max(1, Math.floor(opts.roundTo));
  const w = opts.wide;
  return w && size >= w.channels && size % w.roundTo === 0 && w.roundTo % n === 0 ? w.roundTo : n;
}

/** The fewest channels a tensor of `size` channels may keep: --min-channels, --min-fraction, the rounding unit. */
export function minimumOf(size: number, opts: WidthLimits): number {
  const n = roundingUnit(size, opts);
  const least = Math.max(1, opts.minChannels, Math.ceil(opts.minFraction * size - 1e-9));
  return Math.min(size, Math.ceil(least / n) * n);
}

/**
 * The narrowest width a group may get, and the width for a keep ratio r. `floor` (classes reserved for the
 * group's branches) can raise the narrowest width.
 */
export function widthRule(size: number, opts: WidthLimits, floor = 0) {
  const n = roundingUnit(size, opts);
  const roundUp = (x: number): number => Math.min(size, Math.ceil(x / n) * n);
  const lo = roundUp(Math.max(minimumOf(size, opts), floor));
  return {
    lo,
    step: n,
    at(r: number): number {
      const w = Math.round((r * size) / n) * n;
      return Math.min(size, Math.max(lo, w));
    },
  };
}

/**
 * Chooses a width per group: keep ratio r_g(t) = min(1, t * (0.5 + s_g)) for normalised importance s_g in
 * [0, 1] (or r_g(t) = t with `uniform`), bisection on t until the cost is at most the target, then a greedy fill
 * that widens groups one rounding step at a time while the cost stays under the target, to land within 0.5%.
 */
export function searchWidths(
  analysis: GroupAnalysis,
  model: CostModel,
  importance: readonly number[],
  opts: SearchOptions,
): SearchResult {
  if (!(opts.ratio > 0 && opts.ratio <= 1))
    throw new UserError(`--${opts.budget} must be in (0, 1], got ${opts.ratio}`);
  const groups = analysis.groups;
  const rules = groups.map((g, i) => widthRule(g.size, opts, opts.floors?.[i] ?? 0));
  const full = groups.map((g) => g.size);
  const original = model.cost(full);
  const key = opts.budget === 'flops' ? 'macs' : 'params';
  const target = opts.ratio * original[key];
  const widthsAt = (t: number): number[] =>
    groups.map((g, i) =>
      g.frozen.length ? g.size : rules[i]!.at(opts.uniform ? t : Math.min(1, t * (0.5 + importance[i]!))),
    );

  const floor = model.cost(widthsAt(0))[key];
  if (floor > target + 1e-9) {
    throw new BudgetUnreachableError(
      `--${opts.budget} ${opts.ratio} is not achievable: the smallest model the width limits allow keeps ` +
        `${(floor / original[key]).toFixed(4)} of the original ${key === 'macs' ? 'MACs' : 'params'} ` +
        `(lower --min-channels/--min-fraction, or unfreeze groups)`,
    );
  }
  const started = performance.now();
  let [lo, hi] = [0, opts.uniform ? 1 : 2];
  let steps = 0;
  if (model.cost(widthsAt(hi))[key] <= target) lo = hi;
  else
    while (steps < 60 && hi - lo > 1e-7) {
      steps++;
      const mid = (lo + hi) / 2;
      const c = model.cost(widthsAt(mid))[key];
      if (c <= target) {
        lo = mid;
        if (c >= target * (1 - TOLERANCE)) break;
      } else hi = mid;
    }
  const msPerStep = steps ? (performance.now() - started) / steps : 0;
  let widths = widthsAt(lo);
  const steppable = (w: number[], i: number, dir: 1 | -1): boolean =>
    !groups[i]!.frozen.length && (dir > 0 ? w[i]! < groups[i]!.size : w[i]! > rules[i]!.lo);
  const stepped = (w: number[], i: number, dir: 1 | -1): number =>
    dir > 0
      ? Math.min(groups[i]!.size, w[i]! + rules[i]!.step)
      : Math.max(rules[i]!.lo, w[i]! - rules[i]!.step);
  /** Widens groups one step at a time, most pruned first, while the cost stays under the target. */
  const fill = (w: number[], exclude = -1): { w: number[]; cost: number; steps: number } => {
    let cost = model.cost(w)[key];
    let n = 0;
    while (cost < target * (1 - TOLERANCE)) {
      let best = -1;
      let bestCost = -1;
      for (let i = 0; i < groups.length; i++) {
        if (i === exclude || !steppable(w, i, 1)) continue;
        const prev = w[i]!;
        w[i] = stepped(w, i, 1);
        const c = model.cost(w)[key];
        w[i] = prev;
        // The most pruned group first (lowest kept fraction), then the largest increase: widening by cost alone
        // spends the slack on the groups whose steps are largest (ResNet-56 at 50% MACs, multiples of 8: two
        // stage-1 convs back to full width while every stage-3 conv stayed at 24 of 64).
        const fraction = prev / groups[i]!.size;
        const bestFraction = best < 0 ? Infinity : w[best]! / groups[best]!.size;
        if (
          c <= target &&
          (fraction < bestFraction - 1e-12 || (fraction <= bestFraction + 1e-12 && c > bestCost))
        )
          [best, bestCost] = [i, c];
      }
      if (best < 0) break;
      w[best] = stepped(w, best, 1);
      cost = bestCost;
      n++;
    }
    return { w, cost, steps: n };
  };
  let { cost: current, steps: fillSteps } = fill(widths);
  // Still short: the remaining steps are all too coarse. Try narrowing one group and refilling with finer ones.
  for (let round = 0; round < 32 && current < target * (1 - TOLERANCE); round++) {
    let improved = false;
    for (let i = 0; i < groups.length; i++) {
      if (!steppable(widths, i, -1)) continue;
      const trial = [...widths];
      trial[i] = stepped(trial, i, -1);
      const r = fill(trial, i);
      if (r.cost <= target && r.cost > current) {
        [widths, current, improved] = [r.w, r.cost, true];
        fillSteps += r.steps + 1;
        if (current >= target * (1 - TOLERANCE)) break;
      }
    }
    if (!improved) break;
  }
  const achieved = model.cost(widths);
  const achievedRatio = achieved[key] / original[key];
  const note =
    current < target * (1 - TOLERANCE)
      ? `closest achievable under the target is ${achievedRatio.toFixed(4)} of the original (target ${opts.ratio}); ` +
        `width steps are too coarse to land within 0.5%`
      : undefined;
  return { widths, knob: lo, steps, msPerStep, fillSteps, original, achieved, target, achievedRatio, note };
}

/**
 * A group spanning Concat inputs or Split/Slice outputs keeps a prefix of one priority order over all its
 * classes, so a branch whose classes all rank low would lose every channel (a Conv with 0 outputs, which
 * onnxruntime rejects or crashes on). This moves each member's best classes (its minimumOf count, in the
 * criterion's order, rounded up to the group's unit) to the front of the group's priority, keeping the
 * criterion's order otherwise, and returns how many classes that reserves: any width at or above that floor
 * leaves every branch its minimum. The order is then aligned to the group's rounding unit (alignBranchChunks).
 */
export function reserveBranchMinimums(
  analysis: GroupAnalysis,
  priorities: readonly number[][],
  limits: WidthLimits,
): { priorities: number[][]; floors: number[] } {
  const floors = analysis.groups.map(() => 0);
  const reordered = analysis.groups.map((group, gi) => {
    const priority = priorities[gi]!;
    if (group.frozen.length) return priority;
    const unit = roundingUnit(group.size, limits);
    const reserved = new Uint8Array(group.size);
    const members = partialMembers(group);
    for (const { mask: member, distinct } of members) {
      const least = minimumOf(distinct, limits);
      let need = distinct % unit === 0 ? Math.min(distinct, Math.ceil(least / unit) * unit) : least;
      for (let r = 0; r < priority.length && need > 0; r++) {
        const c = priority[r]!;
        if (member[c]) {
          reserved[c] = 1;
          need--;
        }
      }
    }
    const first = priority.filter((c) => reserved[c]);
    const order = first.length ? [...first, ...priority.filter((c) => !reserved[c])] : priority;
    const aligned = alignBranchChunks(
      order,
      members.map((m) => m.mask),
      unit,
    );
    let floor = 0;
    aligned.forEach((c, r) => reserved[c] && (floor = r + 1));
    floors[gi] = floor;
    return aligned;
  });
  return { priorities: reordered, floors };
}

/** The group's members that hold only some of its classes (Concat inputs, Split outputs): class masks, counts. */
function partialMembers(group: GroupAnalysis['groups'][number]): { mask: Uint8Array; distinct: number }[] {
  const out: { mask: Uint8Array; distinct: number }[] = [];
  for (const s of group.spaces) {
    const member = new Uint8Array(group.size);
    let distinct = 0;
    for (let p = 0; p < s.size; p++) {
      const c = s.classOf[p]!;
      if (!member[c]) [member[c], distinct] = [1, distinct + 1];
    }
    // A member holding every class is served by the group's own minimum.
    if (distinct < group.size) out.push({ mask: member, distinct });
  }
  return out;
}

/**
 * Reorders a priority so that every prefix whose length is a multiple of `unit` keeps a multiple of `unit`
 * classes of each branch: classes are split into parts by which partial members hold them (a Concat's inputs,
 * a Split's outputs), and each part's classes leave in chunks of `unit`, a chunk taking its place in the order
 * when its last class is reached. Without it a Concat group's width is a multiple of 8 while its branches keep
 * any count (DeepLabV3's ASPP convs kept 127, 130, 142 and 145 filters), and every such conv runs off
 * onnxruntime's channel blocks. Left as is where a part's size is not a multiple of the unit.
 */
export function alignBranchChunks(
  priority: readonly number[],
  members: Uint8Array[],
  unit: number,
): number[] {
  if (unit <= 1 || members.length === 0) return [...priority];
  // A class's part: which partial members hold it, as a string key, computed once per class.
  const keyOf = new Map(priority.map((c) => [c, members.map((m) => m[c]).join('')]));
  const partOf = new Map<string, number[]>();
  for (const c of priority) {
    const key = keyOf.get(c)!;
    const part = partOf.get(key);
    if (part) part.push(c);
    else partOf.set(key, [c]);
  }
  if (partOf.size < 2 || [...partOf.values()].some((p) => p.length % unit !== 0)) return [...priority];
  const pending = new Map<string, number[]>();
  const out: number[] = [];
  for (const c of priority) {
    const key = keyOf.get(c)!;
    const chunk = pending.get(key) ?? [];
    chunk.push(c);
    if (chunk.length === unit) {
      out.push(...chunk);
      pending.delete(key);
    } else pending.set(key, chunk);
  }
  return out;
}
