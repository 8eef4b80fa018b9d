import { intsAttr } from '../ir/index.js';
import { constantOf } from '../ir/index.js';
import type { ChannelOp, Space } from './types.js';

interface PadData {
  input: Space;
  output: Space;
  pads: number[];
  begin: number;
}

/**
 * Pad in constant mode on the channel axis (the option-A shortcut): output position begin + j is input j; the
 * padded positions are classes of their own, so the rewrite only recounts the kept padded positions.
 */
export const pad: ChannelOp<PadData> = {
  opTypes: ['Pad'],

  link(node, ins, ctx) {
    const x = ins[0];
    const out = node.outputs[0]!;
    const rank = ctx.dims(node.inputs[0])?.length ?? 0;
    const pads = ctx.opset >= 11 ? ctx.ints(node.inputs[1]) : node.attrInts('pads');
    const mode = node.attrString('mode', 'constant');
    if (!x || !pads || pads.length !== 2 * rank || ins.slice(1).some(Boolean) || node.inputs[3])
      return ctx.unknown(node, `${node}: pad amounts are not known constants`);
    const [begin, end] = [pads[x.axis]!, pads[x.axis + rank]!];
    if (begin === 0 && end === 0) {
      ctx.passThrough(x, node, out);
      return;
    }
    if (mode !== 'constant' || begin < 0 || end < 0)
      return ctx.unknown(node, `${node} pads channels in mode '${mode}' or crops them`);
    const o = ctx.newSpace(out, x.axis)!;
    for (let j = 0; j < x.size; j++) ctx.link(x, j, o, begin + j);
    ctx.record<PadData>(node, { input: x, output: o, pads, begin });
  },

  slice(node, { input, output, pads, begin }, ctx) {
    if (!ctx.changed(output)) return;
    const rank = pads.length / 2;
    const keptOut = ctx.kept(output);
    const next = [...pads];
    next[output.axis] = keptOut.filter((p) => p < begin).length;
    next[output.axis + rank] = keptOut.filter((p) => p >= begin + input.size).length;
    if (ctx.opset >= 11) ctx.setInput(node, 1, ctx.ints(constantOf(node.inputs[1]), next));
    else node.attributes.set('pads', intsAttr(next));
  },
};
