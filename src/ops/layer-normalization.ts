import { normalizationCost, perChannel, slicePerChannel } from './shared.js';
import type { ChannelOp, PerChannel } from './types.js';

/**
 * LayerNormalization (opset 17) over the channel axis alone (the last axis, as after ConvNeXt's NHWC
 * permute): one to one, scale and bias are sliced. After pruning it normalises over the kept channels. Over
 * more axes than the channels (a [C, H, W] scale) it freezes.
 */
export const layerNormalization: ChannelOp<PerChannel> = {
  opTypes: ['LayerNormalization'],

  link(node, ins, ctx) {
    const x = ins[0];
    const rank = ctx.dims(node.inputs[0])?.length ?? 0;
    const axis = node.attrInt('axis', -1);
    const first = axis < 0 ? axis + rank : axis;
    const vectors = node.inputs.slice(1, 3).filter(Boolean);
    if (!x || x.axis !== rank - 1 || first !== rank - 1 || ins.slice(1).some(Boolean))
      return ctx.unknown(node, `${node} normalises over more than the channel axis`);
    if (vectors.some((v) => !ctx.isConst(v)))
      return ctx.unknown(node, `${node}: scale or bias is not constant`);
    if (node.outputs.slice(1).some((o) => o.uses.length > 0))
      ctx.freeze(x, `${node}: its mean or inverse deviation output is used`);
    const o = ctx.passThrough(x, node, node.outputs[0]!);
    if (!o) return;
    perChannel(ctx, node, 1, 0, o, 'scale');
    if (node.inputs[2]) perChannel(ctx, node, 2, 0, o, 'bias');
    ctx.cost(node, 'params', vectors.length, [o]);
  },

  slice: slicePerChannel,

  cost: (node) => normalizationCost(node),
};
