import { constantOf, type Node } from '../ir/index.js';
import { convLikeCost } from './conv.js';
import { prod } from './shared.js';
import type { ChannelOp, FilterLayout, Space } from './types.js';

interface ConvTransposeData {
  input: Space;
  output: Space;
}

/** ConvTranspose (group 1, constant weight [C_in, M, k...]): a new output space; the weight slices on both axes. */
export const convTranspose: ChannelOp<ConvTransposeData> = {
  opTypes: ['ConvTranspose'],

  link(node, ins, ctx) {
    const x = ins[0];
    const w = constantOf(node.inputs[1]);
    if (
      !x ||
      !w ||
      x.axis !== 1 ||
      node.attrInt('group', 1) !== 1 ||
      ins[1] ||
      (node.inputs[2] && !ctx.isConst(node.inputs[2]))
    ) {
      ctx.unknown(node, `${node}: only ungrouped ConvTranspose with constant weights is supported`);
      return;
    }
    const o = ctx.newSpace(node.outputs[0]!, 1)!;
    ctx.record<ConvTransposeData>(node, { input: x, output: o });
    ctx.producer(node, o, convTransposeLayout(node));
    const kernel = prod(w.dims.slice(2));
    ctx.cost(node, 'macs', prod(ctx.dims(x.value)!.slice(2)) * kernel, [x, o]);
    ctx.cost(node, 'params', kernel, [x, o]);
    if (node.inputs[2]) ctx.cost(node, 'params', 1, [o]);
  },

  slice(node, { input, output }, ctx) {
    ctx.sliceInput(node, 1, [
      [0, input],
      [1, output],
    ]);
    if (node.inputs[2]) ctx.sliceInput(node, 2, [[0, output]]);
  },

  linearUse(node, { input, output }) {
    return { input, output, weight: 1, inAxis: 0, outAxis: 1 };
  },

  cost(node, shapeOf) {
    return convLikeCost(node, shapeOf, true);
  },
};

function convTransposeLayout(node: Node): FilterLayout {
  // [C_in, M, k...]: the filter of output p is C_in blocks of k contiguous values, M·k apart.
  const w = constantOf(node.inputs[1])!;
  const [cin, m] = [w.dims[0]!, w.dims[1]!];
  const k = prod(w.dims.slice(2));
  return {
    weight: w,
    len: cin * k,
    rowStep: k,
    stride: 1,
    blocks: { count: cin, step: m * k, size: k },
    ...(node.inputs[2] ? { bias: 2 } : {}),
  };
}
