import { reduceToShape, type GradRule } from './types.js';

export const linearRules: Record<string, GradRule> = {
  // Y = alpha * A' B' + beta * C with A' = transA ? A^T : A (likewise B'); each gradient is one Gemm whose
  // transpose flags absorb the transposes.
  Gemm: (ctx) => {
    const [a, b] = [ctx.node.input(0), ctx.node.input(1)];
    const c = ctx.node.inputs[2];
    const alpha = ctx.node.attrFloat('alpha', 1);
    const beta = ctx.node.attrFloat('beta', 1);
    const ta = ctx.node.attrInt('transA', 0);
    const tb = ctx.node.attrInt('transB', 0);
    const dy = ctx.dy()!;
    const gemm = (p: typeof a, q: typeof a, transA: number, transB: number) =>
      ctx.e.op('Gemm', [p, q], { alpha: { float: alpha }, transA, transB });
    const da = !ctx.needs(0) ? undefined : ta ? gemm(b, dy, tb, 1) : gemm(dy, b, 0, tb ? 0 : 1);
    const db = !ctx.needs(1) ? undefined : tb ? gemm(dy, a, 1, ta) : gemm(a, dy, ta ? 0 : 1, 0);
    const dc =
      c && ctx.needs(2)
        ? reduceToShape(ctx, ctx.e.scale(dy, beta), ctx.shape(ctx.node.output()), ctx.shape(c))
        : undefined;
    return [da, db, dc];
  },
  MatMul: (ctx) => {
    const [a, b] = [ctx.node.input(0), ctx.node.input(1)];
    const [as, bs, ys] = [ctx.shape(a), ctx.shape(b), ctx.shape(ctx.node.output())];
    if (as.length < 2 || bs.length < 2) ctx.fail('MatMul with a 1-D operand has no backward rule');
    const swap = (r: number): number[] => [...Array(r - 2).keys(), r - 1, r - 2];
    const dy = ctx.dy()!;
    return [
      ctx.needs(0)
        ? reduceToShape(ctx, ctx.e.op('MatMul', [dy, ctx.e.transpose(b, swap(bs.length))]), ys, as)
        : undefined,
      ctx.needs(1)
        ? reduceToShape(ctx, ctx.e.op('MatMul', [ctx.e.transpose(a, swap(as.length)), dy]), ys, bs)
        : undefined,
    ];
  },
};
