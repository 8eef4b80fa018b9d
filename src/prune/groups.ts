import { DataType, type Model, type Node, type Value } from '../ir/index.js';
import { constantOf } from '../ir/index.js';
import { opHandler } from '../ops/registry.js';
import { UserError } from '../errors.js';
import type {
  CostTerm,
  FilterLayout,
  LayerCost,
  LinkContext,
  OpRecord,
  ShapeOf,
  Space,
} from '../ops/types.js';
import type { ChannelOp } from '../ops/types.js';
import type { ProbeResult } from '../shapes/probe.js';

/**
 * Channel-group analysis. Every tracked (value, axis) pair is a "space" of channel positions. Operators link
 * positions that must be kept or removed together (an Add links position j of each input and of the output; a
 * Concat links input position j to output position offset + j; a Flatten links every feature of a channel's
 * block to that channel). Linked positions form a channel "class", the unit a plan keeps or removes; spaces
 * sharing any class form a "group", the unit a width is chosen for. Every supported link is order preserving,
 * so keeping a subset of classes keeps every member's positions in their original order: that is what makes
 * Concat offsets, Split sizes and the option-A Pad amounts recomputable (see docs/pruning.md).
 *
 * What each op links is its handler's business (src/ops/); this file is the driver over the registry.
 */

export type { CostTerm, FilterLayout, OpRecord, Space } from '../ops/types.js';

/** A node whose output channels in `space` are filters; `layout` says where they lie in its weight. */
export interface Producer {
  node: Node;
  space: Space;
  layout: FilterLayout;
}

export interface ChannelGroup {
  id: number;
  /** Number of channel classes: the width before pruning. */
  size: number;
  spaces: Space[];
  frozen: string[];
  /** Nodes whose output channels are this group's (their filters score the classes). */
  producers: Producer[];
  /** BatchNormalization nodes over this group's channels. */
  norms: { node: Node; space: Space }[];
}

/** The analysis of one model: read-only once built, shared by every plan made from it. */
export interface GroupAnalysis {
  readonly model: Model;
  readonly spaces: readonly Space[];
  readonly spaceOf: ReadonlyMap<Value, Space>;
  readonly groups: readonly ChannelGroup[];
  /** What each handler recorded for the rewrite, in graph order. */
  readonly records: readonly OpRecord[];
  readonly costs: readonly CostTerm[];
  /** Why the analysis gave up on each node it could not follow. */
  readonly unknownWhy: ReadonlyMap<Node, string>;
  /** Nodes whose handler's cost terms disagreed with inspect's count of the node (rescaled to it; a bug). */
  readonly costMismatches: readonly string[];
  readonly probe: ProbeResult;
}

class UnionFind {
  parent: Int32Array;
  constructor(n: number) {
    this.parent = new Int32Array(n).map((_, i) => i);
  }
  find(x: number): number {
    const p = this.parent;
    while (p[x] !== x) {
      p[x] = p[p[x]!]!;
      x = p[x]!;
    }
    return x;
  }
  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra !== rb) this.parent[Math.max(ra, rb)] = Math.min(ra, rb);
  }
}

/** Collects spaces, links, frozen reasons, records and cost terms while the handlers run. */
class LinkBuilder implements LinkContext {
  readonly spaces: Space[] = [];
  readonly spaceOf = new Map<Value, Space>();
  // Linked position pairs, as two flat lists (a pair array per link was most of this analysis's time).
  readonly linkA: number[] = [];
  readonly linkB: number[] = [];
  readonly frozen = new Map<Space, string[]>();
  readonly records: OpRecord[] = [];
  readonly costs: CostTerm[] = [];
  readonly producers: Producer[] = [];
  readonly norms: { node: Node; space: Space }[] = [];
  /** Why each node the handlers could not follow was given up on (its MACs cannot shrink). */
  readonly unknownWhy = new Map<Node, string>();
  positions = 0;
  current: ChannelOp | undefined;

  constructor(
    readonly model: Model,
    readonly probe: ProbeResult,
  ) {}

  get opset(): number {
    return this.model.opset;
  }
  dims(v: Value | undefined): number[] | undefined {
    return v ? this.probe.dims.get(v) : undefined;
  }
  ints(v: Value | undefined): number[] | undefined {
    const c = constantOf(v);
    if (c) return c.toNumbers();
    return v ? this.probe.ints.get(v) : undefined;
  }
  carried(v: Value | undefined): Space | undefined {
    return v ? this.spaceOf.get(v) : undefined;
  }
  isConst(v: Value | undefined): boolean {
    return constantOf(v) !== undefined;
  }
  freeze(s: Space | undefined, reason: string): void {
    if (!s) return;
    const list = this.frozen.get(s) ?? [];
    if (!list.includes(reason)) list.push(reason);
    this.frozen.set(s, list);
  }
  newSpace(value: Value, axis: number, reason?: string): Space | undefined {
    const d = this.dims(value);
    if (!d || axis < 0 || axis >= d.length) return undefined;
    const s: Space = {
      id: this.spaces.length,
      value,
      axis,
      size: d[axis]!,
      base: this.positions,
      group: -1,
      classOf: new Int32Array(0),
    };
    this.positions += s.size;
    this.spaces.push(s);
    this.spaceOf.set(value, s);
    if (reason) this.freeze(s, reason);
    return s;
  }
  link(a: Space, i: number, b: Space, j: number): void {
    this.linkA.push(a.base + i);
    this.linkB.push(b.base + j);
  }
  same(a: Space, b: Space, node: Node): void {
    if (a.size !== b.size) {
      this.freeze(a, `${node} changes the channel count`);
      this.freeze(b, `${node} changes the channel count`);
      return;
    }
    for (let j = 0; j < a.size; j++) this.link(a, j, b, j);
  }
  passThrough(input: Space, node: Node, out: Value, axis = input.axis): Space | undefined {
    const s = this.newSpace(out, axis);
    if (s) this.same(input, s, node);
    else this.freeze(input, `${node}: output shape unknown`);
    return s;
  }
  unknown(node: Node, why: string): void {
    this.unknownWhy.set(node, why);
    for (const v of node.inputs) this.freeze(v && this.spaceOf.get(v), why);
    for (const o of node.outputs) {
      const d = this.dims(o);
      if (d && d.length >= 2 && o.uses.length > 0) this.newSpace(o, 1, why);
    }
  }
  record<D>(node: Node, data: D): void {
    this.records.push({ op: this.current!, node, data });
  }
  cost(node: Node, kind: 'macs' | 'params', coef: number, spaces: Space[]): void {
    this.costs.push({ node, kind, coef, spaces });
  }
  producer(node: Node, space: Space, layout: FilterLayout): void {
    this.producers.push({ node, space, layout });
  }
  norm(node: Node, space: Space): void {
    this.norms.push({ node, space });
  }

  /** Hands one node to its op's handler; a node no handler knows freezes what it touches. */
  visit(node: Node): void {
    const ins = node.inputs.map((v) => (v ? this.spaceOf.get(v) : undefined));
    if (!ins.some(Boolean) && !opHandler(node.opType)?.startsSpaces?.(node)) return;
    const where = `${node.opType} '${node.name}'`;
    if (node.domain !== '' && node.domain !== 'ai.onnx')
      return this.unknown(node, `${where} (domain ${node.domain}) is not understood`);
    if (node.subgraphs().length > 0) return this.unknown(node, `${where} has subgraphs`);
    const op = opHandler(node.opType);
    if (!op) return this.unknown(node, `${where} is not understood by the channel analysis`);
    this.current = op;
    op.link(node, ins, this);
    this.current = undefined;
  }
}

const FLOAT_TYPES = new Set([DataType.FLOAT, DataType.FLOAT16, DataType.DOUBLE, DataType.BFLOAT16]);

/** Partitions the model's channel dimensions into groups (see the module comment). */
export function analyzeGroups(model: Model, probe: ProbeResult): GroupAnalysis {
  const g = model.graph;
  const b = new LinkBuilder(model, probe);
  for (const v of g.inputs) {
    if (v.isInitializer) continue;
    const d = b.dims(v);
    // Token ids and masks are indices, not channel data: their axis 1 is the sequence.
    const floating = b.probe.types.get(v) === undefined || FLOAT_TYPES.has(b.probe.types.get(v)!);
    if (d && d.length >= 2 && floating)
      b.newSpace(v, inputChannelAxis(v, d.length), `graph input '${v.name}'`);
  }
  for (const node of g.nodes) b.visit(node);
  const costMismatches = completeCosts(b);
  for (const v of g.outputs) b.freeze(b.spaceOf.get(v), `graph output '${v.name}'`);
  for (const s of b.spaces)
    if (s.value.uses.some((u) => u.node.graph !== g))
      b.freeze(s, `'${s.value.name}' is used inside a subgraph`);
  const groups = formGroups(b);
  for (const p of b.producers) groups[p.space.group]!.producers.push(p);
  for (const n of b.norms) groups[n.space.group]!.norms.push(n);
  freezeInertGroups(groups, b.costs);
  const { spaces, spaceOf, records, costs, unknownWhy } = b;
  return { model, spaces, spaceOf, groups, records, costs, costMismatches, unknownWhy, probe };
}

/**
 * A graph input's channel axis: 1 (NCHW images), or the last when every reader is a Linear layer over it
 * (MatMul with a constant 2-D weight, as a transformer taking [B, T, C] features is exported): the weights
 * that read an axis say it carries channels, not its position.
 */
function inputChannelAxis(v: Value, rank: number): number {
  const linear = v.uses.every(
    ({ node, index }) =>
      node.opType === 'MatMul' && index === 0 && constantOf(node.inputs[1])?.dims.length === 2,
  );
  return rank >= 3 && v.uses.length > 0 && linear ? rank - 1 : 1;
}

/**
 * A group with no filters, no norm and no cost term (nothing but broadcast copies, such as an Expanded mask
 * that met no heads) has nothing to score and nothing to save: it is kept whole.
 */
function freezeInertGroups(groups: ChannelGroup[], costs: readonly CostTerm[]): void {
  const costed = new Set(costs.flatMap((t) => t.spaces.map((s) => s.group)));
  for (const g of groups)
    if (!g.frozen.length && !g.producers.length && !g.norms.length && !costed.has(g.id))
      g.frozen.push('no layer in the group has filters or MACs');
}

/**
 * Makes the cost terms count exactly what inspect counts, so a budget is a fraction of the whole model: a
 * node whose handler added no terms (an op the analysis freezes, a MatMul of two activations) adds its MACs
 * and params as a constant term, and a handler's terms that disagree with inspect's count of the node are
 * rescaled to it. Returns the disagreeing nodes, which tests hold at none.
 */
function completeCosts(b: LinkBuilder): string[] {
  const shapeOf = (v: Value): number[] | undefined => b.probe.dims.get(v);
  const termsOf = new Map<Node, CostTerm[]>();
  for (const t of b.costs) termsOf.set(t.node, [...(termsOf.get(t.node) ?? []), t]);
  const mismatches: string[] = [];
  for (const node of b.model.graph.nodes) {
    const counted = nodeCost(node, shapeOf);
    if (!counted) continue;
    for (const kind of ['macs', 'params'] as const) {
      const want = counted[kind];
      const terms = (termsOf.get(node) ?? []).filter((t) => t.kind === kind);
      const have = terms.reduce((a, t) => a + t.spaces.reduce((v, s) => v * s.size, t.coef), 0);
      if (have === want) continue;
      if (have === 0) b.costs.push({ node, kind, coef: want, spaces: [] });
      else {
        mismatches.push(`${node} ${kind}: ${have} counted, ${want} by inspect`);
        for (const t of terms) t.coef *= want / have;
      }
    }
  }
  return mismatches;
}

/** inspect's count of one node at the probed shapes; none where its shapes are unknown. */
function nodeCost(node: Node, shapeOf: ShapeOf): LayerCost | undefined {
  const rule = opHandler(node.opType)?.cost;
  try {
    return rule?.(node, shapeOf);
  } catch (e) {
    if (e instanceof UserError) return undefined;
    throw e;
  }
}

/** Classes: union-find over positions; groups: spaces connected through any class. */
function formGroups(b: LinkBuilder): ChannelGroup[] {
  const { spaces, linkA, linkB, positions } = b;
  const uf = new UnionFind(positions);
  for (let i = 0; i < linkA.length; i++) uf.union(linkA[i]!, linkB[i]!);
  const spaceUf = new UnionFind(spaces.length);
  const spaceAt = new Int32Array(positions);
  for (const s of spaces) spaceAt.fill(s.id, s.base, s.base + s.size);
  for (let i = 0; i < linkA.length; i++) spaceUf.union(spaceAt[linkA[i]!]!, spaceAt[linkB[i]!]!);
  const groupOfRoot = new Map<number, ChannelGroup>();
  const groups: ChannelGroup[] = [];
  const classOfRoot = new Map<number, number>();
  for (const s of spaces) {
    const root = spaceUf.find(s.id);
    let grp = groupOfRoot.get(root);
    if (!grp) {
      grp = { id: groups.length, size: 0, spaces: [], frozen: [], producers: [], norms: [] };
      groups.push(grp);
      groupOfRoot.set(root, grp);
    }
    s.group = grp.id;
    grp.spaces.push(s);
    s.classOf = new Int32Array(s.size);
    for (let j = 0; j < s.size; j++) {
      const r = uf.find(s.base + j);
      let c = classOfRoot.get(r);
      if (c === undefined) {
        c = grp.size++;
        classOfRoot.set(r, c);
      }
      s.classOf[j] = c;
    }
    for (const reason of b.frozen.get(s) ?? []) if (!grp.frozen.includes(reason)) grp.frozen.push(reason);
  }
  return groups;
}

/** One row per group for `inspect --groups` and the prune table. */
export interface GroupRow {
  id: number;
  channels: number;
  members: string[];
  frozen: string | undefined;
}

export function groupRows(analysis: GroupAnalysis): GroupRow[] {
  return analysis.groups.map((grp) => ({
    id: grp.id,
    channels: grp.size,
    members: grp.spaces.map((s) => `${s.value.name}${s.axis !== 1 ? `@${s.axis}` : ''}[${s.size}]`),
    frozen: grp.frozen.length ? grp.frozen.join('; ') : undefined,
  }));
}
