import { constantOf, type Node } from '../ir/index.js';
import { constDims, layerCost, prod, staticDims } from './shared.js';
import { linkActivationMatMul } from './matmul-activations.js';
import type { ChannelOp, FilterLayout, Space } from './types.js';

interface MatMulData {
  input: Space;
  output: Space;
}

/** MatMul(A, constant 2-D B) over A's last (channel) axis: a Linear layer without Gemm; two activations: matmul-activations.ts. */
export const matmul: ChannelOp<MatMulData> = {
  opTypes: ['MatMul'],

  link(node, ins, ctx) {
    const x = ins[0];
    const b = constantOf(node.inputs[1]);
    const xd = ctx.dims(node.inputs[0]);
    if (!constantOf(node.inputs[0]) && !b) return linkActivationMatMul(node, ins, ctx);
    if (!x || !b || !xd || b.dims.length !== 2 || x.axis !== xd.length - 1 || ins[1]) {
      ctx.unknown(node, `${node}: only MatMul(A, constant 2-D B) over A's channel axis is supported`);
      return;
    }
    const o = ctx.newSpace(node.outputs[0]!, xd.length - 1)!;
    ctx.record<MatMulData>(node, { input: x, output: o });
    ctx.producer(node, o, matmulLayout(node));
    // Every leading dim multiplies (the probe runs at batch 1, wherever the batch sits: [T, B, C] after torch's
    // batch_first transpose puts the tokens first).
    ctx.cost(node, 'macs', prod(xd.slice(0, -1)), [x, o]);
    ctx.cost(node, 'params', 1, [x, o]);
    // torch's Linear on a 3-D/4-D input exports as MatMul + Add(bias): the bias is this layer's, as inspect counts.
    const bias = linearBias(node);
    if (bias > 0 && bias % o.size === 0) ctx.cost(node, 'params', bias / o.size, [o]);
  },

  slice(node, { input, output }, ctx) {
    ctx.sliceInput(node, 1, [
      [0, input],
      [1, output],
    ]);
  },

  linearUse(_node, { input, output }) {
    return { input, output, weight: 1, inAxis: 0, outAxis: 1 };
  },

  /** MatMul with a constant operand is a Linear layer; an Add of a constant right after it is its bias. */
  cost(node, shapeOf) {
    const out = staticDims(node, node.outputs[0], 'output', shapeOf);
    const aConst = constDims(node.inputs[0]);
    const bConst = constDims(node.inputs[1]);
    const bDims = bConst?.dims ?? staticDims(node, node.inputs[1], 'input B', shapeOf);
    const aDims = aConst?.dims ?? staticDims(node, node.inputs[0], 'input A', shapeOf);
    const k = aDims.length === 0 ? 1 : aDims[aDims.length - 1]!;
    const params = (aConst ? prod(aConst.dims) : 0) + (bConst ? prod(bConst.dims) : 0);
    const bias = params > 0 ? linearBias(node) : 0;
    return layerCost(node, {
      outChannels: bDims.length >= 2 ? bDims[bDims.length - 1] : undefined,
      macs: prod(out) * k,
      params: params + bias,
      buffers: 0,
      weight: (bConst ?? aConst)?.name,
    });
  },
};

function linearBias(node: Node): number {
  const uses = node.outputs[0]?.uses ?? [];
  if (uses.length !== 1 || uses[0]!.node.opType !== 'Add') return 0;
  const add = uses[0]!.node;
  const other = constDims(add.inputs[1 - uses[0]!.index]);
  return other ? prod(other.dims) : 0;
}

function matmulLayout(node: Node): FilterLayout {
  // B is [K, N]: the filter of output p is column p.
  const w = constantOf(node.inputs[1])!;
  return { weight: w, len: w.dims[0]!, rowStep: 1, stride: w.dims[1]! };
}
