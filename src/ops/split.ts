import { intsAttr } from '../ir/index.js';
import { constantOf } from '../ir/index.js';
import type { ChannelOp, Space } from './types.js';

interface SplitData {
  input: Space;
  outputs: Space[];
}

/** Split on the channel axis: output k position j is input position offset_k + j; the sizes are rewritten. */
export const split: ChannelOp<SplitData> = {
  opTypes: ['Split'],

  link(node, ins, ctx) {
    const x = ins[0];
    const rank = ctx.dims(node.inputs[0])?.length ?? 0;
    const axis = node.attrInt('axis', 0);
    const a = axis < 0 ? axis + rank : axis;
    if (!x || ins.slice(1).some(Boolean)) return ctx.unknown(node, `${node}: unsupported inputs`);
    const outs = node.outputs.map((o) => ctx.newSpace(o, x.axis));
    if (outs.some((s) => !s)) return ctx.unknown(node, `${node}: output shape unknown`);
    if (a !== x.axis) {
      for (const s of outs) ctx.same(x, s!, node);
      return;
    }
    let offset = 0;
    for (const s of outs) {
      for (let j = 0; j < s!.size; j++) ctx.link(x, offset + j, s!, j);
      offset += s!.size;
    }
    if (offset !== x.size) for (const s of [x, ...outs]) ctx.freeze(s, `${node} does not cover its input`);
    ctx.record<SplitData>(node, { input: x, outputs: outs as Space[] });
  },

  slice(node, { input, outputs }, ctx) {
    if (![input, ...outputs].some((s) => ctx.changed(s))) return;
    const sizes = outputs.map((s) => ctx.kept(s).length);
    if (ctx.opset >= 13) {
      node.attributes.delete('num_outputs');
      if (node.inputs.length < 2) node.appendInput(undefined);
      ctx.setInput(node, 1, ctx.ints(constantOf(node.inputs[1]), sizes));
    } else node.attributes.set('split', intsAttr(sizes));
  },
};
