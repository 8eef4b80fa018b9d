import type { Value } from '../../ir/graph.js';
import type { GradContext, GradRule } from './types.js';

/** dX = dY where `mask` holds, else 0. */
function masked(ctx: GradContext, mask: Value): Value {
  return ctx.e.op('Where', [mask, ctx.dy()!, ctx.e.scalar(0)]);
}

function optionalScalar(ctx: GradContext, i: number): number | undefined {
  const v = ctx.node.inputs[i];
  return v ? ctx.constant(v)[0] : undefined;
}

export const activationRules: Record<string, GradRule> = {
  // torch's threshold_backward passes the gradient where x > 0; y > 0 is the same set.
  Relu: (ctx) => [masked(ctx, ctx.e.op('Greater', [ctx.node.output(), ctx.e.scalar(0)]))],
  // hardtanh_backward (ReLU6 too) zeroes the gradient where x <= min or x >= max.
  Clip: (ctx) => {
    const x = ctx.node.input(0);
    const lo = ctx.node.opType === 'Clip' && ctx.node.inputs.length > 1 ? optionalScalar(ctx, 1) : undefined;
    const hi = ctx.node.inputs.length > 2 ? optionalScalar(ctx, 2) : undefined;
    const conds: Value[] = [];
    if (lo !== undefined) conds.push(ctx.e.op('Greater', [x, ctx.e.scalar(lo)]));
    if (hi !== undefined) conds.push(ctx.e.op('Less', [x, ctx.e.scalar(hi)]));
    if (conds.length === 0) return [ctx.dy()];
    return [masked(ctx, conds.length === 1 ? conds[0]! : ctx.e.op('And', conds))];
  },
  LeakyRelu: (ctx) => {
    const alpha = ctx.node.attrFloat('alpha', 0.01);
    const slope = ctx.e.op('Where', [
      ctx.e.op('Greater', [ctx.node.input(0), ctx.e.scalar(0)]),
      ctx.e.scalar(1),
      ctx.e.scalar(alpha),
    ]);
    return [ctx.e.mul(ctx.dy()!, slope)];
  },
  Sigmoid: (ctx) => {
    const y = ctx.node.output();
    return [ctx.e.mul(ctx.dy()!, ctx.e.mul(y, ctx.e.sub(ctx.e.scalar(1), y)))];
  },
  HardSigmoid: (ctx) => {
    const alpha = ctx.node.attrFloat('alpha', 0.2);
    const beta = ctx.node.attrFloat('beta', 0.5);
    const z = ctx.e.add(ctx.e.scale(ctx.node.input(0), alpha), ctx.e.scalar(beta));
    const inside = ctx.e.op('And', [
      ctx.e.op('Greater', [z, ctx.e.scalar(0)]),
      ctx.e.op('Less', [z, ctx.e.scalar(1)]),
    ]);
    return [ctx.e.scale(masked(ctx, inside), alpha)];
  },
  // torch hardswish_backward: 0 for x < -3, x/3 + 1/2 for -3 <= x <= 3, 1 above.
  HardSwish: (ctx) => {
    const x = ctx.node.input(0);
    const mid = ctx.e.add(ctx.e.scale(x, 1 / 3), ctx.e.scalar(0.5));
    const upper = ctx.e.op('Where', [ctx.e.op('Greater', [x, ctx.e.scalar(3)]), ctx.e.scalar(1), mid]);
    const slope = ctx.e.op('Where', [ctx.e.op('Less', [x, ctx.e.scalar(-3)]), ctx.e.scalar(0), upper]);
    return [ctx.e.mul(ctx.dy()!, slope)];
  },
};
