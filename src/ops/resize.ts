import { constantOf } from '../ir/index.js';
import type { ChannelOp, Space } from './types.js';

interface ResizeData {
  input: Space;
  output: Space;
  /** Input index of a constant `sizes` that names the channel count (rewritten to the kept count). */
  sizesInput?: number;
}

/**
 * Resize (every mode, `scales` or `sizes`, constant or computed) and the opset <= 9 Upsample: spatial
 * resampling, so output channel j is input channel j as long as the channel axis keeps its size. Only a
 * constant `sizes` names the channel count; a computed one (torch builds it from Shape) follows the pruned
 * input by itself.
 */
export const resize: ChannelOp<ResizeData> = {
  opTypes: ['Resize', 'Upsample'],

  link(node, ins, ctx) {
    const x = ins[0];
    const out = node.outputs[0];
    if (!x || !out) return ctx.unknown(node, `${node}: unsupported inputs`);
    if (ins.slice(1).some(Boolean))
      return ctx.unknown(node, `${node} takes channel data as its scales or sizes`);
    const outDims = ctx.dims(out);
    if (!outDims || outDims[x.axis] !== x.size)
      return ctx.unknown(node, `${node} resamples the channel axis`);
    const o = ctx.passThrough(x, node, out);
    if (!o) return;
    const sizesInput = sizesIndex(node);
    const data: ResizeData = { input: x, output: o };
    if (sizesInput !== undefined && constantOf(node.inputs[sizesInput])) {
      if (node.attrInts('axes')) return ctx.freeze(x, `${node}: constant sizes with an axes attribute`);
      data.sizesInput = sizesInput;
    }
    ctx.record<ResizeData>(node, data);
  },

  slice(node, { output, sizesInput }, ctx) {
    if (sizesInput === undefined || !ctx.changed(output)) return;
    const sizes = constantOf(node.inputs[sizesInput])!;
    const next = sizes.toNumbers();
    next[output.axis] = ctx.kept(output).length;
    ctx.setInput(node, sizesInput, ctx.ints(sizes, next));
  },
};

/** Where Resize reads `sizes` (opset >= 11: X, roi, scales, sizes); Upsample and opset-10 Resize have none. */
function sizesIndex(node: { opType: string; inputs: readonly unknown[] }): number | undefined {
  return node.opType === 'Resize' && node.inputs.length > 3 && node.inputs[3] ? 3 : undefined;
}
