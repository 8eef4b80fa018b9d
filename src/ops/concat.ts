import type { ChannelOp } from './types.js';

/**
 * Concat on the channel axis: input k position j is output position offset_k + j (other axes: one to one).
 */
export const concat: ChannelOp = {
  opTypes: ['Concat'],

  link(node, ins, ctx) {
    const out = node.outputs[0]!;
    const od = ctx.dims(out);
    const first = ins.find(Boolean)!;
    const axis = node.attrInt('axis', 0);
    const a = od ? (axis < 0 ? axis + od.length : axis) : -1;
    if (!od || ins.some((s) => s && s.axis !== first.axis))
      return ctx.unknown(node, `${node} concatenates differently laid out data`);
    if (a !== first.axis) {
      // Joining along another axis (ViT's class token before the patches): channels stay on their axis.
      const o = ctx.newSpace(out, first.axis)!;
      for (const s of ins) if (s) ctx.same(s, o, node);
      if (ins.some((s) => !s))
        ctx.freeze(o, `${node} joins channel data with data the analysis does not track (a class token)`);
      return;
    }
    if (ins.some((s) => !s))
      return ctx.unknown(node, `${node} concatenates untracked data on the channel axis`);
    const o = ctx.newSpace(out, first.axis)!;
    let offset = 0;
    for (const s of ins) {
      for (let j = 0; j < s!.size; j++) ctx.link(s!, j, o, offset + j);
      offset += s!.size;
    }
  },
};
