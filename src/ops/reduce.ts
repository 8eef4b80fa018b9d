import type { ChannelOp } from './types.js';

/** Reductions over axes other than the channels: one to one (the channel axis moves when dims are dropped). */
export const reduce: ChannelOp = {
  opTypes: [
    'ReduceMean',
    'ReduceSum',
    'ReduceMax',
    'ReduceMin',
    'ReduceL1',
    'ReduceL2',
    'ReduceProd',
    'ReduceLogSumExp',
    'ReduceSumSquare',
  ],

  link(node, ins, ctx) {
    const x = ins[0];
    const d = ctx.dims(node.inputs[0]);
    const e = ctx.dims(node.outputs[0]);
    if (!x || !d || !e) return ctx.unknown(node, `${node}: unsupported inputs`);
    const axesIn =
      node.attrInts('axes') ?? (node.inputs[1] ? ctx.ints(node.inputs[1]) : undefined) ?? d.map((_, i) => i);
    const axes = axesIn.map((a) => (a < 0 ? a + d.length : a));
    if (axes.includes(x.axis)) return ctx.unknown(node, `${node} reduces over channels`);
    const keep = node.attrInt('keepdims', 1) === 1;
    ctx.passThrough(
      x,
      node,
      node.outputs[0]!,
      keep ? x.axis : x.axis - axes.filter((a) => a < x.axis).length,
    );
  },
};
