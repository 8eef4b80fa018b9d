import { constantOf } from '../ir/index.js';
import { prod } from './shared.js';
import type { ChannelOp, Space } from './types.js';

interface ReshapeData {
  output: Space;
  shape: number[];
}

/**
 * Flatten, Reshape, Squeeze, Unsqueeze: the channel axis maps to one output axis, possibly merged with the dims
 * after it, so output feature f belongs to channel floor(f / block) (GAP -> Flatten, or 32x4x4 -> 512 before a
 * Gemm). A Reshape whose constant target names the channel count has it rewritten.
 */
export const reshape: ChannelOp<ReshapeData> = {
  opTypes: ['Reshape', 'Flatten', 'Squeeze', 'Unsqueeze'],

  link(node, ins, ctx) {
    const x = ins[0];
    const d = ctx.dims(node.inputs[0]);
    const e = ctx.dims(node.outputs[0]);
    if (!x || !d || !e || ins.slice(1).some(Boolean)) return ctx.unknown(node, `${node}: unsupported inputs`);
    const b = channelAxisAfter(d, e, x.axis, x.size);
    if (b < 0) return ctx.unknown(node, `${node} splits or merges the channel axis with the batch`);
    const o = ctx.newSpace(node.outputs[0]!, b)!;
    const block = o.size / x.size;
    for (let f = 0; f < o.size; f++) ctx.link(x, Math.floor(f / block), o, f);
    if (node.opType === 'Reshape') {
      const target = ctx.ints(node.inputs[1]);
      if (!target) ctx.freeze(o, `${node}: target shape unknown`);
      else if (target[b]! > 0) {
        if (!constantOf(node.inputs[1]))
          ctx.freeze(o, `${node}: computed target shape names the channel count`);
        else ctx.record<ReshapeData>(node, { output: o, shape: target });
      }
    }
    if (
      (node.opType === 'Squeeze' || node.opType === 'Unsqueeze') &&
      node.inputs[1] &&
      !ctx.ints(node.inputs[1])
    )
      ctx.freeze(o, `${node}: axes unknown`);
  },

  slice(node, { output, shape }, ctx) {
    if (!ctx.changed(output)) return;
    const next = [...shape];
    next[output.axis] = ctx.kept(output).length;
    ctx.setInput(node, 1, ctx.ints(constantOf(node.inputs[1]), next));
  },
};

/** The output axis holding input axis `axis` (of `size`), possibly merged with the dims after it; -1 if none. */
function channelAxisAfter(d: number[], e: number[], axis: number, size: number): number {
  const outer = prod(d.slice(0, axis));
  const inner = prod(d.slice(axis + 1));
  for (let i = 0; i < e.length; i++) {
    const merged = e[i]! / size;
    if (
      prod(e.slice(0, i)) === outer &&
      Number.isInteger(merged) &&
      merged >= 1 &&
      inner % merged === 0 &&
      prod(e.slice(i + 1)) * merged === inner
    )
      return i;
  }
  return -1;
}
