import type { ChannelOp } from './types.js';

/** Concat on the channel axis: input k position j is output position offset_k + j (other axes: one to one). */
export const concat: ChannelOp = {
  opTypes: ['Concat'],

  link(node, ins, ctx) {
    const out = node.outputs[0]!;
    const od = ctx.dims(out);
    const first = ins.find(Boolean)!;
    const axis = node.attrInt('axis', 0);
    const a = od ? (axis < 0 ? axis + od.length : axis) : -1;
    if (!od || ins.some((s) => !s || s.axis !== first.axis))
      return ctx.unknown(node, `${node} concatenates untracked or differently laid out data`);
    const o = ctx.newSpace(out, first.axis)!;
    if (a !== first.axis) {
      for (const s of ins) ctx.same(s!, o, node);
      return;
    }
    let offset = 0;
    for (const s of ins) {
      for (let j = 0; j < s!.size; j++) ctx.link(s!, j, o, offset + j);
      offset += s!.size;
    }
  },
};
