import type { Model, Node, Tensor, Value } from '../ir/index.js';
import type { ProbeResult } from './probe.js';

/**
 * Channel-group analysis. Every tracked (value, axis) pair is a "space" of channel positions. Operators link
 * positions that must be kept or removed together (an Add links position j of each input and of the output; a
 * Concat links input position j to output position offset + j; a Flatten links every feature of a channel's
 * block to that channel). Linked positions form a channel "class", the unit a plan keeps or removes; spaces
 * sharing any class form a "group", the unit a width is chosen for. Every supported link is order preserving,
 * so keeping a subset of classes keeps every member's positions in their original order: that is what makes
 * Concat offsets, Split sizes and the option-A Pad amounts recomputable (see docs/pruning.md).
 */

export interface Space {
  id: number;
  value: Value;
  axis: number;
  size: number;
  /** Global id of position 0 (positions are numbered across all spaces). */
  base: number;
  /** Set once groups are formed. */
  group: number;
  /** Position -> class index within the group. */
  classOf: Int32Array;
}

/** What the rewrite must do at one node, recorded while analysing it. */
export type NodeAction =
  | { kind: 'conv'; node: Node; input: Space | undefined; output: Space; depthwise: boolean }
  | { kind: 'convTranspose'; node: Node; input: Space; output: Space }
  | { kind: 'gemm'; node: Node; input: Space; output: Space; transB: boolean }
  | { kind: 'matmul'; node: Node; input: Space; output: Space }
  /** A constant input holding one value per channel along `axis` (BN vectors, PRelu slopes, per-channel Add). */
  | { kind: 'perChannel'; node: Node; index: number; axis: number; space: Space; role: string }
  | { kind: 'pad'; node: Node; input: Space; output: Space; pads: number[]; begin: number }
  | { kind: 'split'; node: Node; input: Space; outputs: Space[] }
  | { kind: 'slice'; node: Node; input: Space; output: Space; start: number; axisInSlice: number }
  | { kind: 'reshape'; node: Node; output: Space; shape: number[] };

/** A MAC or parameter count: coef times the kept counts of the listed spaces. */
export interface CostTerm {
  node: Node;
  kind: 'macs' | 'params';
  coef: number;
  spaces: Space[];
}

export interface ChannelGroup {
  id: number;
  /** Number of channel classes: the width before pruning. */
  size: number;
  spaces: Space[];
  frozen: string[];
  /** Nodes whose output channels are this group's (their filters score the classes). */
  producers: { node: Node; space: Space }[];
  /** BatchNormalization nodes over this group's channels. */
  norms: { node: Node; space: Space }[];
}

export interface GroupAnalysis {
  model: Model;
  spaces: Space[];
  spaceOf: Map<Value, Space>;
  groups: ChannelGroup[];
  actions: NodeAction[];
  costs: CostTerm[];
  probe: ProbeResult;
}

const UNARY = new Set([
  'Identity',
  'Dropout',
  'Relu',
  'LeakyRelu',
  'Sigmoid',
  'Tanh',
  'Clip',
  'HardSigmoid',
  'HardSwish',
  'Elu',
  'Selu',
  'Celu',
  'Softplus',
  'Softsign',
  'Neg',
  'Abs',
  'Exp',
  'Log',
  'Sqrt',
  'Cast',
  'Erf',
  'Gelu',
  'Mish',
  'Reciprocal',
  'Floor',
  'Ceil',
  'Round',
  'Sign',
  'ThresholdedRelu',
  'Sin',
  'Cos',
]);
const ELEMENTWISE = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mean', 'PRelu']);
const POOLS = new Set([
  'MaxPool',
  'AveragePool',
  'GlobalAveragePool',
  'GlobalMaxPool',
  'LpPool',
  'GlobalLpPool',
]);
const REDUCES = new Set([
  'ReduceMean',
  'ReduceSum',
  'ReduceMax',
  'ReduceMin',
  'ReduceL1',
  'ReduceL2',
  'ReduceProd',
  'ReduceLogSumExp',
  'ReduceSumSquare',
]);
const RESHAPES = new Set(['Reshape', 'Flatten', 'Squeeze', 'Unsqueeze']);

/** The constant a value holds: an initializer, a Constant node's tensor, or either behind Identity nodes. */
export function constantOf(v: Value | undefined): Tensor | undefined {
  for (let depth = 0; v && depth < 16; depth++) {
    if (v.initializer) return v.initializer;
    const p = v.producer;
    if (!p) return undefined;
    if (p.opType === 'Constant') {
      const a = p.attr('value');
      return a && a.type === 4 ? (a.value as Tensor) : undefined;
    }
    if (p.opType !== 'Identity') return undefined;
    v = p.inputs[0];
  }
  return undefined;
}

const prod = (xs: readonly number[]): number => xs.reduce((a, b) => a * b, 1);

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

/** Partitions the model's channel dimensions into groups (see the module comment). */
export function analyzeGroups(model: Model, probe: ProbeResult): GroupAnalysis {
  const g = model.graph;
  const spaces: Space[] = [];
  const spaceOf = new Map<Value, Space>();
  // Linked position pairs, as two flat lists (a pair array per link was most of this analysis's time).
  const linkA: number[] = [];
  const linkB: number[] = [];
  const frozen = new Map<Space, string[]>();
  const actions: NodeAction[] = [];
  const costs: CostTerm[] = [];
  let positions = 0;

  const dims = (v: Value | undefined): number[] | undefined => (v ? probe.dims.get(v) : undefined);
  const freeze = (s: Space | undefined, reason: string): void => {
    if (!s) return;
    const list = frozen.get(s) ?? [];
    if (!list.includes(reason)) list.push(reason);
    frozen.set(s, list);
  };
  const newSpace = (value: Value, axis: number, reason?: string): Space | undefined => {
    const d = dims(value);
    if (!d || axis < 0 || axis >= d.length) return undefined;
    const s: Space = {
      id: spaces.length,
      value,
      axis,
      size: d[axis]!,
      base: positions,
      group: -1,
      classOf: new Int32Array(0),
    };
    positions += s.size;
    spaces.push(s);
    spaceOf.set(value, s);
    if (reason) freeze(s, reason);
    return s;
  };
  const link = (a: Space, i: number, b: Space, j: number): void => {
    linkA.push(a.base + i);
    linkB.push(b.base + j);
  };
  const same = (a: Space, b: Space, node: Node): void => {
    if (a.size !== b.size) {
      freeze(a, `${node} changes the channel count`);
      freeze(b, `${node} changes the channel count`);
      return;
    }
    for (let j = 0; j < a.size; j++) link(a, j, b, j);
  };
  /** Output space on `axis` linked one to one with `input`. */
  const passThrough = (input: Space, node: Node, out: Value, axis = input.axis): Space | undefined => {
    const s = newSpace(out, axis);
    if (s) same(input, s, node);
    else freeze(input, `${node}: output shape unknown`);
    return s;
  };
  const unknown = (node: Node, why: string): void => {
    for (const v of node.inputs) freeze(v && spaceOf.get(v), why);
    for (const o of node.outputs) {
      const d = dims(o);
      if (d && d.length >= 2 && o.uses.length > 0) newSpace(o, 1, why);
    }
  };
  const isConst = (v: Value | undefined): boolean => constantOf(v) !== undefined;
  const intsOf = (v: Value | undefined): number[] | undefined => {
    const c = constantOf(v);
    if (c) return c.toNumbers();
    return v ? probe.ints.get(v) : undefined;
  };

  for (const v of g.inputs) {
    if (v.isInitializer) continue;
    const d = dims(v);
    if (d && d.length >= 2) newSpace(v, 1, `graph input '${v.name}'`);
  }

  for (const node of g.nodes) {
    const ins = node.inputs.map((v) => (v ? spaceOf.get(v) : undefined));
    if (!ins.some(Boolean)) continue;
    const x = ins[0];
    const out = node.outputs[0];
    const op = node.opType;
    const where = `${op} '${node.name}'`;
    if (node.domain !== '' && node.domain !== 'ai.onnx') {
      unknown(node, `${where} (domain ${node.domain}) is not understood`);
      continue;
    }
    if (node.subgraphs().length > 0) {
      unknown(node, `${where} has subgraphs`);
      continue;
    }
    if (UNARY.has(op) && x && out) {
      if (ins.slice(1).some(Boolean)) unknown(node, `${where} takes channel data in a parameter input`);
      else {
        passThrough(x, node, out);
        if (op === 'Dropout' && node.outputs[1]?.uses.length) freeze(x, `${where}: mask output is used`);
      }
      continue;
    }
    if (ELEMENTWISE.has(op) && out) {
      elementwise(node, ins);
      continue;
    }
    if (POOLS.has(op) && x && out) {
      if (x.axis !== 1) unknown(node, `${where} pools with channels off axis 1`);
      else {
        passThrough(x, node, out);
        if (node.outputs[1]?.uses.length) freeze(x, `${where}: indices output is used`);
      }
      continue;
    }
    switch (op) {
      case 'Conv':
        conv(node, ins);
        break;
      case 'ConvTranspose':
        convTranspose(node, ins);
        break;
      case 'Gemm':
        gemm(node, ins);
        break;
      case 'MatMul':
        matmul(node, ins);
        break;
      case 'BatchNormalization':
      case 'InstanceNormalization':
        norm(node, ins);
        break;
      case 'Pad':
        pad(node, ins);
        break;
      case 'Concat':
        concat(node, ins);
        break;
      case 'Split':
        split(node, ins);
        break;
      case 'Slice':
        slice(node, ins);
        break;
      case 'Transpose': {
        const perm = node.attrInts('perm') ?? dims(node.inputs[0])!.map((_, i, a) => a.length - 1 - i);
        if (x && out && !ins.slice(1).some(Boolean)) passThrough(x, node, out, perm.indexOf(x.axis));
        else unknown(node, `${where}: unsupported inputs`);
        break;
      }
      case 'Softmax':
      case 'LogSoftmax':
      case 'Hardmax': {
        const rank = dims(node.inputs[0])?.length ?? 0;
        const axis = node.attrInt('axis', model.opset >= 13 ? -1 : 1);
        const a = axis < 0 ? axis + rank : axis;
        if (x && out && (model.opset >= 13 ? a !== x.axis : a > x.axis)) passThrough(x, node, out);
        else unknown(node, `${where} normalises across channels`);
        break;
      }
      case 'Shape':
        shape(node, x!);
        break;
      default:
        if (RESHAPES.has(op)) reshape(node, ins);
        else if (REDUCES.has(op)) reduce(node, ins);
        else unknown(node, `${where} is not understood by the channel analysis`);
    }
  }

  function elementwise(node: Node, ins: (Space | undefined)[]): void {
    const out = node.outputs[0]!;
    const od = dims(out);
    const lead = ins.find((s) => s && dims(s.value)![s.axis] !== 1) ?? ins.find(Boolean)!;
    const ld = dims(lead.value)!;
    const axis = od ? lead.axis + (od.length - ld.length) : -1;
    const o = od ? newSpace(out, axis) : undefined;
    if (!o) {
      unknown(node, `${node}: output shape unknown`);
      return;
    }
    node.inputs.forEach((v, i) => {
      if (!v) return;
      const d = dims(v) ?? constantOf(v)?.dims;
      const s = ins[i];
      const at = d ? axis - (od!.length - d.length) : -1;
      const size = d && at >= 0 ? d[at]! : 1;
      if (s) {
        if (s.axis === at && s.size === o.size) same(s, o, node);
        else if (size !== 1 || s.axis !== at) {
          freeze(s, `${node} broadcasts channels onto another axis`);
          freeze(o, `${node} broadcasts channels onto another axis`);
        }
      } else if (size !== 1 && size === o.size) {
        if (isConst(v))
          actions.push({
            kind: 'perChannel',
            node,
            index: i,
            axis: at,
            space: o,
            role: node.opType === 'PRelu' ? 'slope' : 'operand',
          });
        else freeze(o, `${node} combines channels with data the analysis does not track`);
      }
    });
  }

  function conv(node: Node, ins: (Space | undefined)[]): void {
    const x = ins[0];
    const w = constantOf(node.inputs[1]);
    const out = node.outputs[0]!;
    const od = dims(out);
    if (!w || !od || ins[1] || ins[2] || (node.inputs[2] && !isConst(node.inputs[2]))) {
      unknown(node, `${node} has weights that are not constant`);
      return;
    }
    const groups = node.attrInt('group', 1);
    const [m, cPerGroup] = [w.dims[0]!, w.dims[1]!];
    const c = cPerGroup * groups;
    const kernel = prod(w.dims.slice(2));
    const o = newSpace(out, 1)!;
    if (x && x.axis !== 1) freeze(x, `${node} reads channels off axis 1`);
    const depthwise = groups > 1 && groups === c && m === c;
    if (x && depthwise) same(x, o, node);
    else if (groups > 1) {
      freeze(x, `${node} is a grouped convolution (${groups} groups)`);
      freeze(o, `${node} is a grouped convolution (${groups} groups)`);
    }
    actions.push({ kind: 'conv', node, input: x, output: o, depthwise });
    const spatial = prod(od.slice(2));
    const inSpaces = x && groups === 1 ? [x] : [];
    const inFactor = groups === 1 && x ? 1 : cPerGroup;
    costs.push({ node, kind: 'macs', coef: spatial * kernel * inFactor, spaces: [o, ...inSpaces] });
    costs.push({ node, kind: 'params', coef: kernel * inFactor, spaces: [o, ...inSpaces] });
    if (node.inputs[2]) costs.push({ node, kind: 'params', coef: 1, spaces: [o] });
  }

  function convTranspose(node: Node, ins: (Space | undefined)[]): void {
    const x = ins[0];
    const w = constantOf(node.inputs[1]);
    const out = node.outputs[0]!;
    if (
      !x ||
      !w ||
      x.axis !== 1 ||
      node.attrInt('group', 1) !== 1 ||
      ins[1] ||
      (node.inputs[2] && !isConst(node.inputs[2]))
    ) {
      unknown(node, `${node}: only ungrouped ConvTranspose with constant weights is supported`);
      return;
    }
    const o = newSpace(out, 1)!;
    actions.push({ kind: 'convTranspose', node, input: x, output: o });
    const kernel = prod(w.dims.slice(2));
    costs.push({ node, kind: 'macs', coef: prod(dims(x.value)!.slice(2)) * kernel, spaces: [x, o] });
    costs.push({ node, kind: 'params', coef: kernel, spaces: [x, o] });
    if (node.inputs[2]) costs.push({ node, kind: 'params', coef: 1, spaces: [o] });
  }

  function gemm(node: Node, ins: (Space | undefined)[]): void {
    const x = ins[0];
    const b = constantOf(node.inputs[1]);
    const out = node.outputs[0]!;
    const transB = node.attrInt('transB', 0) === 1;
    if (
      !x ||
      !b ||
      x.axis !== 1 ||
      node.attrInt('transA', 0) !== 0 ||
      ins[1] ||
      ins[2] ||
      (node.inputs[2] && !isConst(node.inputs[2]))
    ) {
      unknown(node, `${node}: only Gemm(A, constant B) with features on axis 1 is supported`);
      return;
    }
    const o = newSpace(out, 1)!;
    actions.push({ kind: 'gemm', node, input: x, output: o, transB });
    costs.push({ node, kind: 'macs', coef: 1, spaces: [x, o] });
    costs.push({ node, kind: 'params', coef: 1, spaces: [x, o] });
    if (node.inputs[2]) costs.push({ node, kind: 'params', coef: 1, spaces: [o] });
  }

  function matmul(node: Node, ins: (Space | undefined)[]): void {
    const x = ins[0];
    const b = constantOf(node.inputs[1]);
    const xd = dims(node.inputs[0]);
    if (!x || !b || !xd || b.dims.length !== 2 || x.axis !== xd.length - 1 || ins[1]) {
      unknown(node, `${node}: only MatMul(A, constant 2-D B) over A's channel axis is supported`);
      return;
    }
    const o = newSpace(node.outputs[0]!, xd.length - 1)!;
    actions.push({ kind: 'matmul', node, input: x, output: o });
    costs.push({ node, kind: 'macs', coef: prod(xd.slice(1, -1)), spaces: [x, o] });
    costs.push({ node, kind: 'params', coef: 1, spaces: [x, o] });
  }

  function norm(node: Node, ins: (Space | undefined)[]): void {
    const x = ins[0];
    const count = node.opType === 'BatchNormalization' ? 5 : 3;
    if (
      !x ||
      x.axis !== 1 ||
      ins.slice(1).some(Boolean) ||
      node.inputs.slice(1, count).some((v) => !isConst(v))
    ) {
      unknown(node, `${node}: unsupported inputs`);
      return;
    }
    if (node.outputs.slice(1).some((o) => o.uses.length > 0))
      freeze(x, `${node} exports training statistics`);
    const o = passThrough(x, node, node.outputs[0]!);
    if (!o) return;
    const roles = ['scale', 'bias', 'mean', 'var'];
    for (let i = 1; i < count; i++)
      actions.push({ kind: 'perChannel', node, index: i, axis: 0, space: o, role: roles[i - 1]! });
    costs.push({ node, kind: 'params', coef: 2, spaces: [o] });
  }

  function pad(node: Node, ins: (Space | undefined)[]): void {
    const x = ins[0];
    const out = node.outputs[0]!;
    const rank = dims(node.inputs[0])?.length ?? 0;
    const pads = model.opset >= 11 ? intsOf(node.inputs[1]) : node.attrInts('pads');
    const mode = node.attrString('mode', 'constant');
    if (!x || !pads || pads.length !== 2 * rank || ins.slice(1).some(Boolean) || node.inputs[3]) {
      unknown(node, `${node}: pad amounts are not known constants`);
      return;
    }
    const [begin, end] = [pads[x.axis]!, pads[x.axis + rank]!];
    if (begin === 0 && end === 0) {
      passThrough(x, node, out);
      return;
    }
    if (mode !== 'constant' || begin < 0 || end < 0) {
      unknown(node, `${node} pads channels in mode '${mode}' or crops them`);
      return;
    }
    const o = newSpace(out, x.axis)!;
    for (let j = 0; j < x.size; j++) link(x, j, o, begin + j);
    actions.push({ kind: 'pad', node, input: x, output: o, pads, begin });
  }

  function concat(node: Node, ins: (Space | undefined)[]): void {
    const out = node.outputs[0]!;
    const od = dims(out);
    const first = ins.find(Boolean)!;
    const axis = node.attrInt('axis', 0);
    const a = od ? (axis < 0 ? axis + od.length : axis) : -1;
    if (!od || ins.some((s) => !s || s.axis !== first.axis)) {
      unknown(node, `${node} concatenates untracked or differently laid out data`);
      return;
    }
    const o = newSpace(out, first.axis)!;
    if (a !== first.axis) {
      for (const s of ins) same(s!, o, node);
      return;
    }
    let offset = 0;
    for (const s of ins) {
      for (let j = 0; j < s!.size; j++) link(s!, j, o, offset + j);
      offset += s!.size;
    }
  }

  function split(node: Node, ins: (Space | undefined)[]): void {
    const x = ins[0];
    const rank = dims(node.inputs[0])?.length ?? 0;
    const axis = node.attrInt('axis', 0);
    const a = axis < 0 ? axis + rank : axis;
    if (!x || ins.slice(1).some(Boolean)) {
      unknown(node, `${node}: unsupported inputs`);
      return;
    }
    const outs = node.outputs.map((o) => newSpace(o, x.axis));
    if (outs.some((s) => !s)) {
      unknown(node, `${node}: output shape unknown`);
      return;
    }
    if (a !== x.axis) {
      for (const s of outs) same(x, s!, node);
      return;
    }
    let offset = 0;
    for (const s of outs) {
      for (let j = 0; j < s!.size; j++) link(x, offset + j, s!, j);
      offset += s!.size;
    }
    if (offset !== x.size) for (const s of [x, ...outs]) freeze(s, `${node} does not cover its input`);
    actions.push({ kind: 'split', node, input: x, outputs: outs as Space[] });
  }

  function slice(node: Node, ins: (Space | undefined)[]): void {
    const x = ins[0];
    const xd = dims(node.inputs[0]);
    const out = node.outputs[0]!;
    const starts = model.opset >= 10 ? intsOf(node.inputs[1]) : node.attrInts('starts');
    const axes =
      (model.opset >= 10 ? node.inputs[3] && intsOf(node.inputs[3]) : node.attrInts('axes')) ??
      starts?.map((_, i) => i);
    const steps = (model.opset >= 10 && node.inputs[4] && intsOf(node.inputs[4])) || starts?.map(() => 1);
    if (!x || !xd || !starts || !axes || !steps || ins.slice(1).some(Boolean)) {
      unknown(node, `${node}: slice bounds are not known constants`);
      return;
    }
    const k = axes.findIndex((ax) => (ax < 0 ? ax + xd.length : ax) === x.axis);
    if (k < 0) {
      passThrough(x, node, out);
      return;
    }
    const o = newSpace(out, x.axis);
    if (!o || steps[k] !== 1) {
      unknown(node, `${node} slices channels with step ${steps[k]}`);
      return;
    }
    let start = starts[k]!;
    if (start < 0) start += x.size;
    start = Math.min(Math.max(start, 0), x.size);
    for (let j = 0; j < o.size; j++) link(x, start + j, o, j);
    actions.push({ kind: 'slice', node, input: x, output: o, start, axisInSlice: k });
  }

  function reshape(node: Node, ins: (Space | undefined)[]): void {
    const x = ins[0];
    const d = dims(node.inputs[0]);
    const e = dims(node.outputs[0]);
    if (!x || !d || !e || ins.slice(1).some(Boolean)) {
      unknown(node, `${node}: unsupported inputs`);
      return;
    }
    // Find the output axis b holding the channel axis, possibly merged with the dims after it.
    const outer = prod(d.slice(0, x.axis));
    const inner = prod(d.slice(x.axis + 1));
    let b = -1;
    for (let i = 0; i < e.length; i++) {
      const merged = e[i]! / x.size;
      if (
        prod(e.slice(0, i)) === outer &&
        Number.isInteger(merged) &&
        merged >= 1 &&
        inner % merged === 0 &&
        prod(e.slice(i + 1)) * merged === inner
      ) {
        b = i;
        break;
      }
    }
    if (b < 0) {
      unknown(node, `${node} splits or merges the channel axis with the batch`);
      return;
    }
    const o = newSpace(node.outputs[0]!, b)!;
    const block = o.size / x.size;
    for (let f = 0; f < o.size; f++) link(x, Math.floor(f / block), o, f);
    if (node.opType === 'Reshape') {
      const target = intsOf(node.inputs[1]);
      if (!target) freeze(o, `${node}: target shape unknown`);
      else if (target[b]! > 0) {
        if (!constantOf(node.inputs[1])) freeze(o, `${node}: computed target shape names the channel count`);
        else actions.push({ kind: 'reshape', node, output: o, shape: target });
      }
    }
    if (
      (node.opType === 'Squeeze' || node.opType === 'Unsqueeze') &&
      node.inputs[1] &&
      !intsOf(node.inputs[1])
    )
      freeze(o, `${node}: axes unknown`);
  }

  function reduce(node: Node, ins: (Space | undefined)[]): void {
    const x = ins[0];
    const d = dims(node.inputs[0]);
    const e = dims(node.outputs[0]);
    if (!x || !d || !e) {
      unknown(node, `${node}: unsupported inputs`);
      return;
    }
    const axesIn =
      node.attrInts('axes') ?? (node.inputs[1] ? intsOf(node.inputs[1]) : undefined) ?? d.map((_, i) => i);
    const axes = axesIn.map((a) => (a < 0 ? a + d.length : a));
    if (axes.includes(x.axis)) {
      unknown(node, `${node} reduces over channels`);
      return;
    }
    const keep = node.attrInt('keepdims', 1) === 1;
    passThrough(x, node, node.outputs[0]!, keep ? x.axis : x.axis - axes.filter((a) => a < x.axis).length);
  }

  function shape(node: Node, x: Space): void {
    const uses = node.outputs[0]!.uses;
    const safe =
      node.attrInt('start') === undefined &&
      node.attrInt('end') === undefined &&
      uses.every(
        (u) =>
          u.node.opType === 'Gather' && u.index === 0 && intsOf(u.node.inputs[1])?.every((i) => i !== x.axis),
      );
    if (!safe) freeze(x, `${node} reads the channel count`);
  }

  for (const v of g.outputs) freeze(spaceOf.get(v), `graph output '${v.name}'`);
  for (const s of spaces) {
    if (s.value.uses.some((u) => u.node.graph !== g))
      freeze(s, `'${s.value.name}' is used inside a subgraph`);
  }

  // Classes: union-find over positions; groups: spaces connected through any class.
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
    for (const reason of frozen.get(s) ?? []) if (!grp.frozen.includes(reason)) grp.frozen.push(reason);
  }
  for (const a of actions) {
    if (a.kind === 'conv' || a.kind === 'convTranspose' || a.kind === 'gemm' || a.kind === 'matmul')
      groups[a.output.group]!.producers.push({ node: a.node, space: a.output });
    if (a.kind === 'perChannel' && a.role === 'scale' && a.node.opType === 'BatchNormalization')
      groups[a.space.group]!.norms.push({ node: a.node, space: a.space });
  }
  return { model, spaces, spaceOf, groups, actions, costs, probe };
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
