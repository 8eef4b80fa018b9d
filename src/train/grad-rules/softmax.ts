import type { GradContext, GradRule } from './types.js';

/**
 * The axis a Softmax/LogSoftmax normalises over, with opset-13 semantics (one axis, default -1). Older nodes
 * (one softmax over the coerced 2-D [prod(dims[:axis]), prod(dims[axis:])]) are rewritten into that form before
 * the step graph is built (upgrade-opset.ts: Reshape, Softmax over the last axis, Reshape).
 */
function softmaxAxis(ctx: GradContext): number {
  const rank = ctx.shape(ctx.node.input(0)).length;
  return (ctx.node.attrInt('axis', -1) + rank) % rank;
}

export const softmaxRules: Record<string, GradRule> = {
  // y = softmax(x): dx = y * (dy - sum(dy * y)) over the axis.
  Softmax: (ctx) => {
    const e = ctx.e;
    const y = ctx.node.output();
    const dy = ctx.dy()!;
    const dot = e.reduceSum(e.mul(dy, y), [softmaxAxis(ctx)], true);
    return [e.mul(y, e.sub(dy, dot))];
  },
  // y = log softmax(x): dx = dy - exp(y) * sum(dy) over the axis.
  LogSoftmax: (ctx) => {
    const e = ctx.e;
    const dy = ctx.dy()!;
    const total = e.reduceSum(dy, [softmaxAxis(ctx)], true);
    return [e.sub(dy, e.mul(e.op('Exp', [ctx.node.output()]), total))];
  },
};
