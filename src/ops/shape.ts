import type { ChannelOp } from './types.js';

/**
 * Shape of channel data: harmless when its only use is a Gather of a non-channel index (DenseNet's
 * `x.view(N, -1)` reads the batch); anything else reads the channel count, which pruning would change.
 */
export const shape: ChannelOp = {
  opTypes: ['Shape'],

  link(node, ins, ctx) {
    const x = ins[0];
    if (!x) return;
    const safe =
      node.attrInt('start') === undefined &&
      node.attrInt('end') === undefined &&
      node.outputs[0]!.uses.every(
        (u) =>
          u.node.opType === 'Gather' &&
          u.index === 0 &&
          ctx.ints(u.node.inputs[1])?.every((i) => i !== x.axis),
      );
    if (!safe) ctx.freeze(x, `${node} reads the channel count`);
  },
};
