import {
  DataType,
  Tensor,
  Value,
  cloneModel,
  constantOf,
  tensorType,
  type Graph,
  type Model,
  type Node,
} from '../ir/index.js';
import type { SliceContext } from '../ops/types.js';
import { removeDeadNodes } from '../passes/dead-code.js';
import { removeUnusedInitializers } from '../passes/unused-initializers.js';
import type { GroupAnalysis, Space } from './groups.js';
import { sliceTensorData } from './tensor-data.js';

/** Kept positions (ascending) of every space for the given per-group keep masks. */
export function keptPositions(analysis: GroupAnalysis, keep: readonly Uint8Array[]): Int32Array[] {
  return analysis.spaces.map((s) => {
    const mask = keep[s.group]!;
    const out: number[] = [];
    for (let p = 0; p < s.size; p++) if (mask[s.classOf[p]!]) out.push(p);
    return Int32Array.from(out);
  });
}

/** Copies `t` keeping, along each listed axis, only the given (ascending) indices. */
export function sliceTensor(t: Tensor, keepByAxis: Map<number, ArrayLike<number>>): Tensor {
  const { data, dims } = sliceTensorData(t, keepByAxis);
  return Tensor.fromArray(t.dataType, dims, data, t.name);
}

/**
 * Points input `index` of `node` at `tensor`: in place when the input is an initializer only this node reads
 * (so torch's parameter names survive), else as a new initializer.
 */
function setConstInput(g: Graph, node: Node, index: number, tensor: Tensor): void {
  const v = node.inputs[index];
  if (v?.initializer && v.uses.length === 1 && !g.inputs.includes(v)) {
    v.initializer.setData(tensor.data, tensor.dims);
    if (v.type?.kind === 'tensor') v.type = tensorType(v.type.elemType, [...tensor.dims]);
    return;
  }
  const name = g.uniqueName(v?.name ? `${v.name}_pruned` : `${node.name || node.opType}_input${index}`);
  const nv = new Value(name, tensorType(tensor.dataType, [...tensor.dims]));
  g.addInitializer(nv, Tensor.fromArray(tensor.dataType, tensor.dims, tensor.data, name));
  node.setInput(index, nv);
}

function intsLike(orig: Tensor | undefined, values: number[]): Tensor {
  const type = orig?.dataType === DataType.INT32 ? DataType.INT32 : DataType.INT64;
  return type === DataType.INT32
    ? Tensor.fromArray(type, [values.length], Int32Array.from(values))
    : Tensor.int64(values);
}

/**
 * A new model: the analysed one with every member sliced to the keep masks (see docs/pruning.md, "Rewrite").
 * The analysed model is not changed (the copy shares its untouched weight bytes).
 */
export function applyKeep(analysis: GroupAnalysis, keep: readonly Uint8Array[]): Model {
  const { model, nodes, values } = cloneModel(analysis.model);
  rewrite(
    model,
    analysis,
    keep,
    (n) => nodes.get(n)!,
    (v) => values.get(v)!,
  );
  return model;
}

function rewrite(
  model: Model,
  analysis: GroupAnalysis,
  keep: readonly Uint8Array[],
  nodeIn: (n: Node) => Node,
  valueIn: (v: Value) => Value,
): void {
  const g = model.graph;
  const kept = keptPositions(analysis, keep);
  const changed = (s: Space | undefined): boolean => !!s && kept[s.id]!.length < s.size;
  const ctx: SliceContext = {
    model,
    opset: model.opset,
    kept: (s) => kept[s.id]!,
    changed,
    sliceInput(node, index, axes) {
      const t = constantOf(node.inputs[index]);
      if (!t) return;
      const m = new Map<number, ArrayLike<number>>();
      for (const [axis, s] of axes) if (s && changed(s) && t.dims[axis] === s.size) m.set(axis, kept[s.id]!);
      if (m.size) setConstInput(g, node, index, sliceTensor(t, m));
    },
    setInput: (node, index, tensor) => setConstInput(g, node, index, tensor),
    ints: intsLike,
  };
  for (const r of analysis.records) r.op.slice?.(nodeIn(r.node), r.data, ctx);
  for (const s of analysis.spaces) {
    const v = valueIn(s.value);
    const t = v.type;
    if (changed(s) && t?.kind === 'tensor' && t.shape && s.axis < t.shape.length) {
      const shape = [...t.shape];
      shape[s.axis] = kept[s.id]!.length;
      v.type = tensorType(t.elemType, shape);
    }
  }
  // A Pad's old pads subgraph and the sliced-away constants are now unread.
  removeDeadNodes.run(model);
  removeUnusedInitializers.run(model);
}
