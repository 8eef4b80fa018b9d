import type { Value } from '../../ir/graph.js';
import type { GradContext, GradRule } from './types.js';

/** dX = dY * f'(x), the local derivative built from the node's input and output. */
function unary(local: (ctx: GradContext, x: Value, y: Value) => Value): GradRule {
  return (ctx) => [ctx.e.mul(ctx.dy()!, local(ctx, ctx.node.input(0), ctx.node.output()))];
}

/** exp(-x^2 / 2) / sqrt(2 pi), the standard normal density. */
function normalDensity(ctx: GradContext, x: Value): Value {
  const e = ctx.e;
  return e.scale(e.op('Exp', [e.scale(e.mul(x, x), -0.5)]), 1 / Math.sqrt(2 * Math.PI));
}

/** torch's gelu_backward: exact (x Phi(x))' = Phi(x) + x phi(x); the tanh form differentiated as torch does. */
function geluSlope(ctx: GradContext, x: Value): Value {
  const e = ctx.e;
  const approximate = ctx.node.attrString('approximate', 'none');
  if (approximate === 'none') {
    const cdf = e.scale(e.add(e.op('Erf', [e.scale(x, Math.SQRT1_2)]), e.scalar(1)), 0.5);
    return e.add(cdf, e.mul(x, normalDensity(ctx, x)));
  }
  if (approximate !== 'tanh') ctx.fail(`Gelu approximate='${approximate}' has no backward rule`);
  const beta = Math.sqrt(2 / Math.PI);
  const kappa = 0.044715;
  const x2 = e.mul(x, x);
  const t = e.op('Tanh', [e.scale(e.add(x, e.scale(e.mul(x2, x), kappa)), beta)]);
  const left = e.scale(e.add(t, e.scalar(1)), 0.5);
  const sech2 = e.sub(e.scalar(1), e.mul(t, t));
  const inner = e.scale(e.add(e.scale(x2, 3 * kappa), e.scalar(1)), beta);
  return e.add(left, e.mul(e.scale(x, 0.5), e.mul(sech2, inner)));
}

export const mathRules: Record<string, GradRule> = {
  Sqrt: unary((ctx, _x, y) => ctx.e.op('Div', [ctx.e.scalar(0.5), y])),
  Exp: unary((_ctx, _x, y) => y),
  Log: unary((ctx, x) => ctx.e.op('Reciprocal', [x])),
  Reciprocal: unary((ctx, _x, y) => ctx.e.op('Neg', [ctx.e.mul(y, y)])),
  Tanh: unary((ctx, _x, y) => ctx.e.sub(ctx.e.scalar(1), ctx.e.mul(y, y))),
  // erf'(x) = 2 / sqrt(pi) exp(-x^2)
  Erf: unary((ctx, x) =>
    ctx.e.scale(ctx.e.op('Exp', [ctx.e.op('Neg', [ctx.e.mul(x, x)])]), 2 / Math.sqrt(Math.PI)),
  ),
  Gelu: unary((ctx, x) => geluSlope(ctx, x)),
};
