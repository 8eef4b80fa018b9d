import { constantOf, type Node } from '../ir/index.js';
import { constDims, layerCost, prod, staticDims } from './shared.js';
import type { ChannelOp, FilterLayout, Space } from './types.js';

interface GemmData {
  input: Space;
  output: Space;
  transB: boolean;
}

/** Gemm(A, constant B) with features on axis 1 (a Linear layer): a new output space, B slices on both axes. */
export const gemm: ChannelOp<GemmData> = {
  opTypes: ['Gemm'],

  link(node, ins, ctx) {
    const x = ins[0];
    const b = constantOf(node.inputs[1]);
    const transB = node.attrInt('transB', 0) === 1;
    if (
      !x ||
      !b ||
      x.axis !== 1 ||
      node.attrInt('transA', 0) !== 0 ||
      ins[1] ||
      ins[2] ||
      (node.inputs[2] && !ctx.isConst(node.inputs[2]))
    ) {
      ctx.unknown(node, `${node}: only Gemm(A, constant B) with features on axis 1 is supported`);
      return;
    }
    const o = ctx.newSpace(node.outputs[0]!, 1)!;
    ctx.record<GemmData>(node, { input: x, output: o, transB });
    ctx.producer(node, o, gemmLayout(node, transB));
    // Every row of A multiplies (one per image in a classifier, T·B for torch attention's out projection).
    ctx.cost(node, 'macs', ctx.dims(node.inputs[0])?.[0] ?? 1, [x, o]);
    ctx.cost(node, 'params', 1, [x, o]);
    if (node.inputs[2]) ctx.cost(node, 'params', 1, [o]);
  },

  slice(node, { input, output, transB }, ctx) {
    ctx.sliceInput(
      node,
      1,
      transB
        ? [
            [0, output],
            [1, input],
          ]
        : [
            [0, input],
            [1, output],
          ],
    );
    const c = node.inputs[2] ? constantOf(node.inputs[2]) : undefined;
    if (c && c.dims.length > 0) ctx.sliceInput(node, 2, [[c.dims.length - 1, output]]);
  },

  linearUse(node, { input, output, transB }) {
    return { input, output, weight: 1, inAxis: transB ? 1 : 0, outAxis: transB ? 0 : 1 };
  },

  cost(node, shapeOf) {
    const bConst = constDims(node.inputs[1]);
    const b = bConst?.dims ?? staticDims(node, node.inputs[1], 'input B', shapeOf);
    const transB = node.attrInt('transB', 0) !== 0;
    const [k, n] = transB ? [b[1]!, b[0]!] : [b[0]!, b[1]!];
    // Rows of the output: the batch for a CNN head, which the analysis took as 1.
    const m = staticDims(node, node.outputs[0], 'output', shapeOf)[0]!;
    const c = constDims(node.inputs[2]);
    return layerCost(node, {
      outChannels: n,
      macs: m * k * n,
      params: (bConst ? prod(b) : 0) + (c ? prod(c.dims) : 0),
      buffers: 0,
      weight: bConst?.name,
    });
  },
};

function gemmLayout(node: Node, transB: boolean): FilterLayout {
  const w = constantOf(node.inputs[1])!;
  const bias = constantOf(node.inputs[2]);
  const biasSlot = bias && bias.dims.length > 0 ? { bias: 2 } : {};
  // transB: B is [N, K] and row p is output p; otherwise B is [K, N] and the filter is column p.
  if (transB) return { weight: w, len: w.dims[1]!, rowStep: w.dims[1]!, stride: 1, ...biasSlot };
  return { weight: w, len: w.dims[0]!, rowStep: 1, stride: w.dims[1]!, ...biasSlot };
}
