import { DataType } from '../../ir/data-type.js';
import type { Value } from '../../ir/graph.js';
import { reduceToShape, type GradContext, type GradRule } from './types.js';

function reshapeBack(ctx: GradContext): (Value | undefined)[] {
  return [ctx.e.reshape(ctx.dy()!, ctx.shape(ctx.node.input(0)))];
}

export function zeros(ctx: GradContext, shape: number[]): Value {
  return ctx.e.op('Expand', [ctx.e.scalar(0), ctx.e.ints(shape)], {}, 'zeros');
}

/** The normalized (start, step, count) of one sliced axis, as ONNX Slice clamps them. */
function sliceAxis(start: number, end: number, step: number, dim: number): { start: number; count: number } {
  const clamp = (v: number, lo: number, hi: number): number => Math.min(Math.max(v, lo), hi);
  const s = clamp(start < 0 ? start + dim : start, 0, dim);
  const e = clamp(end < 0 ? end + dim : end, 0, dim);
  return { start: s, count: Math.max(0, Math.ceil((e - s) / step)) };
}

export const shapeRules: Record<string, GradRule> = {
  Flatten: reshapeBack,
  Reshape: (ctx) => reshapeBack(ctx),
  Squeeze: (ctx) => reshapeBack(ctx),
  Unsqueeze: (ctx) => reshapeBack(ctx),
  Transpose: (ctx) => {
    const rank = ctx.shape(ctx.node.input(0)).length;
    const perm = ctx.node.attrInts('perm', [...Array(rank).keys()].reverse());
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return [ctx.e.transpose(ctx.dy()!, inverse)];
  },
  // torch's expand (a class token, a mask): summed back over the broadcast axes.
  Expand: (ctx) => [
    reduceToShape(ctx, ctx.dy()!, ctx.shape(ctx.node.output()), ctx.shape(ctx.node.input(0))),
  ],
  // Only a float-to-float Cast carries a gradient (the differentiable set holds float outputs only).
  Cast: (ctx) => {
    if (ctx.node.attrInt('to', 0) !== DataType.FLOAT)
      ctx.fail('a Cast to a type other than float on the gradient path has no backward rule');
    return [ctx.dy()];
  },
  Concat: (ctx) => {
    const rank = ctx.shape(ctx.node.output()).length;
    const axis = (ctx.node.attrInt('axis', 0) + rank) % rank;
    const sizes = ctx.node.inputs.map((v) => ctx.shape(v!)[axis]!);
    const parts = ctx.e.opN('Split', [ctx.dy()!, ctx.e.ints(sizes)], sizes.length, { axis });
    return parts.map((p, i) => (ctx.needs(i) ? p : undefined));
  },
  Split: (ctx) => {
    const rank = ctx.shape(ctx.node.input(0)).length;
    const axis = (ctx.node.attrInt('axis', 0) + rank) % rank;
    const parts = ctx.node.outputs.map((o, i) => ctx.dy(i) ?? zeros(ctx, ctx.shape(o)));
    return [ctx.e.op('Concat', parts, { axis })];
  },
  // Scatter dY back into zeros: per axis, a step s is undone by interleaving s-1 zero rows
  // (Unsqueeze, Pad, Reshape), then the offset by a Pad (or a Slice where the last stride overhangs).
  Slice: (ctx) => {
    const inShape = ctx.shape(ctx.node.input(0));
    const rank = inShape.length;
    const [starts, ends] = [ctx.constant(ctx.node.input(1)), ctx.constant(ctx.node.input(2))];
    const axes = ctx.node.inputs[3]
      ? ctx.constant(ctx.node.inputs[3]).map((a) => (a + rank) % rank)
      : starts.map((_, i) => i);
    const steps = ctx.node.inputs[4] ? ctx.constant(ctx.node.inputs[4]) : starts.map(() => 1);
    let g = ctx.dy()!;
    const shape = [...ctx.shape(ctx.node.output())];
    axes.forEach((axis, k) => {
      const step = steps[k]!;
      if (step <= 0)
        ctx.fail(`a Slice with step ${step} on the gradient path has no backward rule (only positive steps)`);
      const dim = inShape[axis]!;
      const { start, count } = sliceAxis(starts[k]!, ends[k]!, step, dim);
      let span = count;
      if (step > 1) {
        const unsq = [...shape.slice(0, axis + 1), 1, ...shape.slice(axis + 1)];
        const pads = new Array<number>(2 * (rank + 1)).fill(0);
        pads[rank + 1 + axis + 1] = step - 1;
        g = ctx.e.op('Pad', [ctx.e.reshape(g, unsq), ctx.e.ints(pads)]);
        span = count * step;
        shape[axis] = span;
        g = ctx.e.reshape(g, shape);
      }
      const tail = dim - start - span;
      if (tail < 0) {
        g = ctx.e.slice(g, [0], [span + tail], [axis]);
        span += tail;
      }
      if (start > 0 || tail > 0) {
        const pads = new Array<number>(2 * rank).fill(0);
        pads[axis] = start;
        pads[rank + axis] = Math.max(tail, 0);
        g = ctx.e.op('Pad', [g, ctx.e.ints(pads)]);
      }
      shape[axis] = dim;
    });
    return [g];
  },
  Pad: (ctx) => {
    const mode = ctx.node.attrString('mode', 'constant');
    if (mode !== 'constant')
      ctx.fail(`Pad mode '${mode}' on the gradient path has no backward rule (only 'constant')`);
    const inShape = ctx.shape(ctx.node.input(0));
    const rank = inShape.length;
    const pads = ctx.node.inputs[1] ? ctx.constant(ctx.node.input(1)) : ctx.node.attrInts('pads', []);
    if (ctx.node.inputs[3]) ctx.fail('Pad with an axes input has no backward rule');
    if (pads.some((p) => p < 0)) ctx.fail('Pad with negative pads has no backward rule');
    const begins = pads.slice(0, rank);
    if (pads.every((p) => p === 0)) return [ctx.dy()];
    return [
      ctx.e.slice(
        ctx.dy()!,
        begins,
        begins.map((b, i) => b + inShape[i]!),
        [...Array(rank).keys()],
      ),
    ];
  },
};
