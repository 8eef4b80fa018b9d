import {
  DataType,
  Tensor,
  Value,
  intAttr,
  intsAttr,
  tensorType,
  type Graph,
  type Model,
  type Node,
} from '../ir/index.js';
import { removeDeadNodes } from '../passes/dead-code.js';
import { removeUnusedInitializers } from '../passes/unused-initializers.js';
import { constantOf, type GroupAnalysis, type Space } from './groups.js';
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

/** Slices every member per the keep masks (see docs/pruning.md, "Rewrite"). Mutates the model. */
export function applyKeep(model: Model, analysis: GroupAnalysis, keep: readonly Uint8Array[]): void {
  const g = model.graph;
  const kept = keptPositions(analysis, keep);
  const changed = (s: Space | undefined): boolean => !!s && kept[s.id]!.length < s.size;
  const k = (s: Space): Int32Array => kept[s.id]!;
  const slice = (node: Node, index: number, axes: [number, Space | undefined][]): void => {
    const t = constantOf(node.inputs[index]);
    if (!t) return;
    const m = new Map<number, ArrayLike<number>>();
    for (const [axis, s] of axes) if (s && changed(s) && t.dims[axis] === s.size) m.set(axis, k(s));
    if (m.size) setConstInput(g, node, index, sliceTensor(t, m));
  };

  for (const a of analysis.actions) {
    const node = a.node;
    switch (a.kind) {
      case 'conv': {
        const inAxis = a.depthwise || node.attrInt('group', 1) > 1 ? undefined : a.input;
        slice(node, 1, [
          [0, a.output],
          [1, inAxis],
        ]);
        if (node.inputs[2]) slice(node, 2, [[0, a.output]]);
        if (a.depthwise && changed(a.output)) node.attributes.set('group', intAttr(k(a.output).length));
        break;
      }
      case 'convTranspose':
        slice(node, 1, [
          [0, a.input],
          [1, a.output],
        ]);
        if (node.inputs[2]) slice(node, 2, [[0, a.output]]);
        break;
      case 'gemm':
        slice(
          node,
          1,
          a.transB
            ? [
                [0, a.output],
                [1, a.input],
              ]
            : [
                [0, a.input],
                [1, a.output],
              ],
        );
        if (node.inputs[2]) {
          const c = constantOf(node.inputs[2]);
          if (c && c.dims.length > 0) slice(node, 2, [[c.dims.length - 1, a.output]]);
        }
        break;
      case 'matmul':
        slice(node, 1, [
          [0, a.input],
          [1, a.output],
        ]);
        break;
      case 'perChannel':
        slice(node, a.index, [[a.axis, a.space]]);
        break;
      case 'pad': {
        if (!changed(a.output)) break;
        const rank = a.pads.length / 2;
        const keptOut = k(a.output);
        const pads = [...a.pads];
        pads[a.output.axis] = keptOut.filter((p) => p < a.begin).length;
        pads[a.output.axis + rank] = keptOut.filter((p) => p >= a.begin + a.input.size).length;
        if (model.opset >= 11) setConstInput(g, node, 1, intsLike(constantOf(node.inputs[1]), pads));
        else node.attributes.set('pads', intsAttr(pads));
        break;
      }
      case 'split': {
        if (![a.input, ...a.outputs].some(changed)) break;
        const sizes = a.outputs.map((s) => k(s).length);
        if (model.opset >= 13) {
          node.attributes.delete('num_outputs');
          if (node.inputs.length < 2) node.appendInput(undefined);
          setConstInput(g, node, 1, intsLike(constantOf(node.inputs[1]), sizes));
        } else node.attributes.set('split', intsAttr(sizes));
        break;
      }
      case 'slice': {
        if (!changed(a.input) && !changed(a.output)) break;
        const start = k(a.input).filter((p) => p < a.start).length;
        const end = start + k(a.output).length;
        if (model.opset >= 10) {
          for (const [index, value] of [
            [1, start],
            [2, end],
          ] as const) {
            const t = constantOf(node.inputs[index])!;
            const vals = t.toNumbers();
            vals[a.axisInSlice] = value;
            setConstInput(g, node, index, intsLike(t, vals));
          }
        } else {
          const starts = node.attrInts('starts')!;
          const ends = node.attrInts('ends')!;
          starts[a.axisInSlice] = start;
          ends[a.axisInSlice] = end;
          node.attributes.set('starts', intsAttr(starts));
          node.attributes.set('ends', intsAttr(ends));
        }
        break;
      }
      case 'reshape': {
        if (!changed(a.output)) break;
        const shape = [...a.shape];
        shape[a.output.axis] = k(a.output).length;
        setConstInput(g, node, 1, intsLike(constantOf(node.inputs[1]), shape));
        break;
      }
    }
  }
  for (const s of analysis.spaces) {
    const t = s.value.type;
    if (changed(s) && t?.kind === 'tensor' && t.shape && s.axis < t.shape.length) {
      const shape = [...t.shape];
      shape[s.axis] = k(s).length;
      s.value.type = tensorType(t.elemType, shape);
    }
  }
  // A Pad's old pads subgraph and the sliced-away constants are now unread.
  removeDeadNodes.run(model);
  removeUnusedInitializers.run(model);
}
