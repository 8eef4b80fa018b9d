import type { ChannelOp } from './types.js';

/** Spatial pooling: channel j of the output is channel j of the input. */
export const pool: ChannelOp = {
  opTypes: ['MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool', 'LpPool', 'GlobalLpPool'],

  link(node, ins, ctx) {
    const x = ins[0];
    const out = node.outputs[0];
    if (!x || !out) return ctx.unknown(node, `${node}: unsupported inputs`);
    if (x.axis !== 1) return ctx.unknown(node, `${node} pools with channels off axis 1`);
    ctx.passThrough(x, node, out);
    if (node.outputs[1]?.uses.length) ctx.freeze(x, `${node}: indices output is used`);
  },
};
