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
  // d(a^b)/da = b a^(b-1); d(a^b)/db = y ln a.
  Pow: binary((ctx, dy, i) => {
    const [a, b] = [ctx.node.input(0), ctx.node.input(1)];
    const e = ctx.e;
    if (i === 0) return e.mul(dy, e.mul(b, e.op('Pow', [a, e.sub(b, e.scalar(1))])));
    return e.mul(dy, e.mul(ctx.node.output(), e.op('Log', [a])));
  }),
  // Where(cond, a, b): the gradient goes to a where cond holds, to b elsewhere (torch's masked_fill and
  // where); the condition has none.
  Where: (ctx) => {
    const dy = ctx.dy()!;
    const outShape = ctx.shape(ctx.node.output());
    const cond = ctx.node.input(0);
    const zero = ctx.e.scalar(0);
    return [1, 2].reduce<(Value | undefined)[]>(
      (grads, i) => {
        if (!ctx.needs(i)) return grads;
        const local = ctx.e.op('Where', i === 1 ? [cond, dy, zero] : [cond, zero, dy]);
        grads[i] = reduceToShape(ctx, local, outShape, ctx.shape(ctx.node.input(i)));
        return grads;
      },
      [undefined, undefined, undefined],
    );
  },
  Sum: (ctx) =>
    ctx.node.inputs.map((v, i) =>
      ctx.needs(i) ? reduceToShape(ctx, ctx.dy()!, ctx.shape(ctx.node.output()), ctx.shape(v!)) : undefined,
    ),
  Neg: (ctx) => [ctx.e.op('Neg', [ctx.dy()!])],
  Identity: (ctx) => [ctx.dy()],
  // Fine-tuning runs dropout as identity (documented in docs/finetune.md).
  Dropout: (ctx) => [ctx.dy()],
};
