import { constantOf, intsAttr } from '../ir/index.js';
import type { ChannelOp, Space } from './types.js';

interface SliceData {
  input: Space;
  output: Space;
  start: number;
  axisInSlice: number;
  /** The bounds as the analysis read them (constants, or shape arithmetic such as `chunk`'s). */
  bounds: [number[], number[]];
}

/** Slice of the channel axis with step 1 and known bounds: output j is input start + j; bounds are rewritten. */
export const slice: ChannelOp<SliceData> = {
  opTypes: ['Slice'],

  link(node, ins, ctx) {
    const x = ins[0];
    const xd = ctx.dims(node.inputs[0]);
    const out = node.outputs[0]!;
    const modern = ctx.opset >= 10;
    const starts = modern ? ctx.ints(node.inputs[1]) : node.attrInts('starts');
    const axes =
      (modern ? node.inputs[3] && ctx.ints(node.inputs[3]) : node.attrInts('axes')) ??
      starts?.map((_, i) => i);
    const steps = (modern && node.inputs[4] && ctx.ints(node.inputs[4])) || starts?.map(() => 1);
    // Computed ends (torch's chunk) are read from the probe; constant ones (possibly INT64_MAX) when rewritten.
    const ends = modern && !ctx.isConst(node.inputs[2]) ? ctx.ints(node.inputs[2]) : [];
    if (!x || !xd || !starts || !ends || !axes || !steps || ins.slice(1).some(Boolean))
      return ctx.unknown(node, `${node}: slice bounds are not known constants`);
    const k = axes.findIndex((ax) => (ax < 0 ? ax + xd.length : ax) === x.axis);
    if (k < 0) {
      ctx.passThrough(x, node, out);
      return;
    }
    const o = ctx.newSpace(out, x.axis);
    if (!o || steps[k] !== 1) return ctx.unknown(node, `${node} slices channels with step ${steps[k]}`);
    let start = starts[k]!;
    if (start < 0) start += x.size;
    start = Math.min(Math.max(start, 0), x.size);
    for (let j = 0; j < o.size; j++) ctx.link(x, start + j, o, j);
    const bounds: SliceData['bounds'] = [starts, ends];
    ctx.record<SliceData>(node, { input: x, output: o, start, axisInSlice: k, bounds });
  },

  slice(node, { input, output, start: oldStart, axisInSlice, bounds }, ctx) {
    if (!ctx.changed(input) && !ctx.changed(output)) return;
    const start = ctx.kept(input).filter((p) => p < oldStart).length;
    const end = start + ctx.kept(output).length;
    if (ctx.opset >= 10) {
      for (const [index, value] of [
        [1, start],
        [2, end],
      ] as const) {
        // Computed bounds (torch's chunk) become constants: the shapes they were computed from are static.
        const t = constantOf(node.inputs[index]);
        const vals = t ? t.toNumbers() : [...bounds[index - 1]!];
        vals[axisInSlice] = value;
        ctx.setInput(node, index, ctx.ints(t, vals));
      }
      return;
    }
    const starts = node.attrInts('starts')!;
    const ends = node.attrInts('ends')!;
    starts[axisInSlice] = start;
    ends[axisInSlice] = end;
    node.attributes.set('starts', intsAttr(starts));
    node.attributes.set('ends', intsAttr(ends));
  },
};
