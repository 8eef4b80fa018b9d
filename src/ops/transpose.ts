import type { ChannelOp } from './types.js';

/** Transpose: one to one, the channel axis moves to where `perm` puts it. */
export const transpose: ChannelOp = {
  opTypes: ['Transpose'],

  link(node, ins, ctx) {
    const x = ins[0];
    const out = node.outputs[0];
    if (!x || !out || ins.slice(1).some(Boolean)) return ctx.unknown(node, `${node}: unsupported inputs`);
    const perm = node.attrInts('perm') ?? ctx.dims(node.inputs[0])!.map((_, i, a) => a.length - 1 - i);
    ctx.passThrough(x, node, out, perm.indexOf(x.axis));
  },
};
