import { reduceToShape, type GradRule } from './types.js';

export const layerNormRules: Record<string, GradRule> = {
  /**
   * LayerNormalization (opset 17) over axes [axis, rank): with xhat = (x - mean) * rstd recomputed from X,
   * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) where g = dy * scale; dscale = sum(dy * xhat) and
   * dbias = sum(dy) over the leading axes (broadcast back to their shapes).
   */
  LayerNormalization: (ctx) => {
    const e = ctx.e;
    const x = ctx.node.input(0);
    const xShape = ctx.shape(x);
    const rank = xShape.length;
    const axis = (ctx.node.attrInt('axis', -1) + rank) % rank;
    const axes = [...Array(rank - axis).keys()].map((k) => axis + k);
    const eps = ctx.node.attrFloat('epsilon', 1e-5);
    const dy = ctx.dy()!;
    const centred = e.sub(x, e.reduceMean(x, axes, true));
    const variance = e.reduceMean(e.mul(centred, centred), axes, true);
    const rstd = e.op('Reciprocal', [e.op('Sqrt', [e.add(variance, e.scalar(eps))])]);
    const xhat = e.mul(centred, rstd);
    const scale = ctx.node.input(1);
    const bias = ctx.node.inputs[2];
    let dx;
    if (ctx.needs(0)) {
      const g = e.mul(dy, scale);
      const inner = e.sub(
        e.sub(g, e.reduceMean(g, axes, true)),
        e.mul(xhat, e.reduceMean(e.mul(g, xhat), axes, true)),
      );
      dx = e.mul(rstd, inner);
    }
    return [
      dx,
      ctx.needs(1) ? reduceToShape(ctx, e.mul(dy, xhat), xShape, ctx.shape(scale)) : undefined,
      bias && ctx.needs(2) ? reduceToShape(ctx, dy, xShape, ctx.shape(bias)) : undefined,
    ];
  },
};
