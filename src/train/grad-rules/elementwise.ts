import type { Value } from '../../ir/graph.js';
import { reduceToShape, type GradContext, type GradRule } from './types.js';

/** Gradient of a broadcasting binary op: the local gradient, then summed back to each operand's shape. */
function binary(local: (ctx: GradContext, dy: Value, i: number) => Value): GradRule {
  return (ctx) => {
    const dy = ctx.dy()!;
    const outShape = ctx.shape(ctx.node.output());
    return [0, 1].map((i) => {
      if (!ctx.needs(i)) return undefined;
      return reduceToShape(ctx, local(ctx, dy, i), outShape, ctx.shape(ctx.node.input(i)));
    });
  };
}

export const elementwiseRules: Record<string, GradRule> = {
  Add: binary((_ctx, dy) => dy),
  Sub: binary((ctx, dy, i) => (i === 0 ? dy : ctx.e.op('Neg', [dy]))),
  Mul: binary((ctx, dy, i) => ctx.e.mul(dy, ctx.node.input(1 - i))),
  // d(a/b)/da = 1/b; d(a/b)/db = -y/b.
  Div: binary((ctx, dy, i) => {
    const b = ctx.node.input(1);
    if (i === 0) return ctx.e.op('Div', [dy, b]);
    return ctx.e.op('Neg', [ctx.e.op('Div', [ctx.e.mul(dy, ctx.node.output()), b])]);
  }),
  Sum: (ctx) =>
    ctx.node.inputs.map((v, i) =>
      ctx.needs(i) ? reduceToShape(ctx, ctx.dy()!, ctx.shape(ctx.node.output()), ctx.shape(v!)) : undefined,
    ),
  Neg: (ctx) => [ctx.e.op('Neg', [ctx.dy()!])],
  Identity: (ctx) => [ctx.dy()],
  // Fine-tuning runs dropout as identity (documented in docs/finetune.md).
  Dropout: (ctx) => [ctx.dy()],
};
