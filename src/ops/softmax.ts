import type { ChannelOp } from './types.js';

/** Softmax-like ops normalising over an axis other than the channels: one to one. */
export const softmax: ChannelOp = {
  opTypes: ['Softmax', 'LogSoftmax', 'Hardmax'],

  link(node, ins, ctx) {
    const x = ins[0];
    const out = node.outputs[0];
    const rank = ctx.dims(node.inputs[0])?.length ?? 0;
    // Before opset 13 the input was coerced to 2-D at `axis`: every axis from there on is normalised together.
    const modern = ctx.opset >= 13;
    const axis = node.attrInt('axis', modern ? -1 : 1);
    const a = axis < 0 ? axis + rank : axis;
    if (x && out && (modern ? a !== x.axis : a > x.axis)) ctx.passThrough(x, node, out);
    else ctx.unknown(node, `${node} normalises across channels`);
  },
};
