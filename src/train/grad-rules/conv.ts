import { DataType } from '../../ir/data-type.js';
import type { Value } from '../../ir/graph.js';
import { tensorType } from '../../ir/types.js';
import type { GradContext, GradRule } from './types.js';

interface ConvGeometry {
  n: number;
  cin: number;
  cout: number;
  group: number;
  x: number[];
  y: number[];
  k: number[];
  s: number[];
  d: number[];
  /** [top, left, bottom, right] */
  p: number[];
}

function geometry(ctx: GradContext): ConvGeometry {
  const xs = ctx.shape(ctx.node.input(0));
  const ws = ctx.shape(ctx.node.input(1));
  const ys = ctx.shape(ctx.node.output());
  if (xs.length !== 4) ctx.fail(`only 2-D Conv has a backward rule (input rank ${xs.length})`);
  const k = ws.slice(2);
  const s = ctx.node.attrInts('strides', [1, 1]);
  const d = ctx.node.attrInts('dilations', [1, 1]);
  const x = xs.slice(2);
  let p = ctx.node.attrInts('pads', [0, 0, 0, 0]);
  const autoPad = ctx.node.attrString('auto_pad', 'NOTSET');
  if (autoPad === 'VALID') p = [0, 0, 0, 0];
  else if (autoPad !== 'NOTSET') {
    const total = x.map((h, i) =>
      Math.max(0, (Math.ceil(h / s[i]!) - 1) * s[i]! + d[i]! * (k[i]! - 1) + 1 - h),
    );
    const small = total.map((t) => Math.floor(t / 2));
    const big = total.map((t, i) => t - small[i]!);
    p = autoPad === 'SAME_UPPER' ? [...small, ...big] : [...big, ...small];
  }
  return {
    n: xs[0]!,
    cin: xs[1]!,
    cout: ws[0]!,
    group: ctx.node.attrInt('group', 1),
    x,
    y: ys.slice(2),
    k,
    s,
    d,
    p,
  };
}

/**
 * dX. Stride 1: a Conv of dY with the kernel transposed per group and flipped in space (Slice, step -1) and
 * padding d(k-1)-p, which onnxruntime runs through its fast (im2col/NCHWc) Conv path; measured faster than
 * ConvTranspose, whose CPU kernel is a col2im over a GEMM. Stride > 1 (or a padding the flipped Conv cannot
 * express): ConvTranspose, whose output_padding recovers the rows the forward stride dropped.
 */
function inputGrad(ctx: GradContext, g: ConvGeometry, dy: Value, w: Value): Value {
  const { k, s, d, p, group } = g;
  const convPads = [0, 1, 2, 3].map((i) => d[i % 2]! * (k[i % 2]! - 1) - p[i]!);
  if (s.every((v) => v === 1) && convPads.every((v) => v >= 0)) {
    const e = ctx.e;
    const perGroupOut = g.cout / group;
    const perGroupIn = g.cin / group;
    let wt: Value = w;
    if (group === 1) wt = e.transpose(w, [1, 0, 2, 3]);
    else if (perGroupOut !== 1 || perGroupIn !== 1) {
      wt = e.reshape(e.transpose(e.reshape(w, [group, perGroupOut, perGroupIn, ...k]), [0, 2, 1, 3, 4]), [
        g.cin,
        perGroupOut,
        ...k,
      ]);
    }
    const flipped = e.slice(wt, [-1, -1], [-(k[0]! + 1), -(k[1]! + 1)], [2, 3], [-1, -1]);
    // The static shape lets blocked-conv.ts run this Conv through the blocked-layout kernels.
    flipped.type = tensorType(DataType.FLOAT, [g.cin, perGroupOut, ...k]);
    return e.op('Conv', [dy, flipped], {
      group,
      kernel_shape: k,
      pads: convPads,
      dilations: d,
      strides: [1, 1],
    });
  }
  const outPad = [0, 1].map(
    (i) => g.x[i]! - ((g.y[i]! - 1) * s[i]! + d[i]! * (k[i]! - 1) + 1 - p[i]! - p[i + 2]!),
  );
  return ctx.e.op('ConvTranspose', [dy, w], {
    group,
    kernel_shape: k,
    strides: s,
    pads: p,
    dilations: d,
    output_padding: outPad,
  });
}

/**
 * dW.
 * Depthwise (one filter per channel): one Conv with group = N*C, X as [1, N*C, H, W] and dY as the kernel
 * [N*C, 1, Ho, Wo] (the forward stride becomes the dilation), then a sum over N. A single grouped Conv
 * beats a per-channel GEMM of size 1 x (Ho*Wo) x (kh*kw) by a wide margin.
 * Stride 1, ungrouped: rowShiftWeightGrad. Otherwise: im2col (Pad, kh*kw strided Slices, Concat) and one
 * MatMul batched over N and the groups, then a ReduceSum over N; the Conv-over-transposed-tensors formulation
 * was 2-6x slower in onnxruntime.
 */
function weightGrad(ctx: GradContext, g: ConvGeometry, x: Value, dy: Value): Value {
  const e = ctx.e;
  const { n, cin, cout, group, k, s, d, p } = g;
  const [ho, wo] = g.y as [number, number];
  if (group === cin && group === cout) {
    const xs = e.reshape(x, [1, n * cin, ...g.x]);
    const ker = e.reshape(dy, [n * cin, 1, ho, wo]);
    ker.type = tensorType(DataType.FLOAT, [n * cin, 1, ho, wo]); // lets blocked-conv.ts take it (depthwise)
    let out = e.op('Conv', [xs, ker], {
      group: n * cin,
      kernel_shape: [ho, wo],
      strides: d,
      dilations: s,
      pads: p,
    });
    const full = [0, 1].map(
      (i) => Math.floor((g.x[i]! + p[i]! + p[i + 2]! - s[i]! * (g.y[i]! - 1) - 1) / d[i]!) + 1,
    );
    if (full[0] !== k[0] || full[1] !== k[1]) out = e.slice(out, [0, 0], k, [2, 3]);
    return e.reshape(e.reduceSum(e.reshape(out, [n, cin, 1, ...k]), [0], false), [cout, 1, ...k]);
  }
  const kk = k[0]! * k[1]!;
  const rowShift = s.every((v) => v === 1) && d.every((v) => v === 1);
  if (group === 1 && kk > 1 && rowShift) return rowShiftWeightGrad(ctx, g, x, dy);
  const perIn = cin / group;
  const perOut = cout / group;
  let cols: Value;
  if (kk === 1 && s.every((v) => v === 1) && p.every((v) => v === 0)) {
    cols = e.reshape(x, [n, group, perIn, ho * wo]);
  } else {
    const xp = p.some((v) => v !== 0)
      ? e.op('Pad', [x, e.ints([0, 0, p[0]!, p[1]!, 0, 0, p[2]!, p[3]!])])
      : x;
    const taps: Value[] = [];
    for (let i = 0; i < k[0]!; i++) {
      for (let j = 0; j < k[1]!; j++) {
        const [r0, c0] = [i * d[0]!, j * d[1]!];
        const tap = e.slice(
          xp,
          [r0, c0],
          [r0 + s[0]! * (ho - 1) + 1, c0 + s[1]! * (wo - 1) + 1],
          [2, 3],
          [s[0]!, s[1]!],
        );
        taps.push(e.reshape(tap, [n, cin, 1, ho * wo]));
      }
    }
    cols = e.reshape(e.op('Concat', taps, { axis: 2 }), [n, group, perIn * kk, ho * wo]);
  }
  // cols is ~kh*kw times larger than dY, so dY is the operand that gets transposed.
  const dyT = e.transpose(e.reshape(dy, [n, group, perOut, ho * wo]), [0, 1, 3, 2]);
  const perImage = e.op('MatMul', [cols, dyT]); // [N, G, Cin/G*kk, Cout/G]
  const summed = e.reduceSum(perImage, [0], false);
  return e.reshape(e.transpose(summed, [0, 2, 1]), [cout, perIn, ...k]);
}

/**
 * dW of a stride-1, undilated, ungrouped Conv without im2col's kh*kw shifted copies of X (and their Concat).
 * X padded in height only; rows_i is its rows i..i+Ho-1, for every i in one Gather of whole rows:
 * [N, Cin*kh, Ho*W]. dY'_j is dY shifted in width by j - left pad (zeros shifted in) onto X's width W, so that
 * flat position t of dY'_j lines up with the X column tap j reads: dW[o, c, i, j] = sum over n and t of
 * dY'_j[n, o, t] * rows_i[n, c, t]. Per image and j, one MatMul [Cin*kh, Ho*W] x [Ho*W, Cout] covers a
 * column of taps. That writes kh + kw - 1 copies of the activations (dY itself is the unshifted one) instead
 * of 2*kh*kw. Measured (batch 128, median CPU ms of 20 runs alternating with im2col): 16 channels at 32x32
 * 12.2 vs 21.0, 32 at 16x16 8.9 vs 14.6, 64 at 8x8 8.8 vs 11.3.
 */
function rowShiftWeightGrad(ctx: GradContext, g: ConvGeometry, x: Value, dy: Value): Value {
  const e = ctx.e;
  const { n, cin, cout, k, p } = g;
  const [kh, kw] = k as [number, number];
  const [ho, wo] = g.y as [number, number];
  const w = g.x[1]!;
  const xh = p[0] || p[2] ? e.op('Pad', [x, e.ints([0, 0, p[0]!, 0, 0, 0, p[2]!, 0])]) : x;
  const rowIndex = Array.from({ length: kh * ho }, (_, r) => Math.floor(r / ho) + (r % ho));
  const rows = e.reshape(e.op('Gather', [xh, e.ints(rowIndex)], { axis: 2 }), [n, cin * kh, ho * w]);
  // dY'_j[u] = dY[u + left pad - j]: one Pad wide enough for every shift, then a Slice per j.
  const [padL, padR] = [Math.max(0, kw - 1 - p[1]!), Math.max(0, kw - 1 - p[3]!)];
  const dyp = padL || padR ? e.op('Pad', [dy, e.ints([0, 0, 0, padL, 0, 0, 0, padR])]) : dy;
  const columns: Value[] = [];
  for (let j = 0; j < kw; j++) {
    const start = p[1]! - j + padL;
    const shifted = start === padL && w === wo ? dy : e.slice(dyp, [start], [start + w], [3]);
    const t = e.transpose(e.reshape(shifted, [n, cout, ho * w]), [0, 2, 1]);
    columns.push(e.reduceSum(e.op('MatMul', [rows, t]), [0], false)); // [Cin*kh, Cout]
  }
  const taps = e.reshape(e.op('Concat', columns, { axis: 0 }), [kw, cin, kh, cout]);
  return e.transpose(taps, [3, 1, 2, 0]);
}

/**
 * ConvTranspose (2-D) is the adjoint of the Conv with its strides, pads, dilations and groups, whose weight
 * [Cin, Cout/group, kh, kw] has exactly ConvTranspose's layout: dX = Conv(dY, W) (the output_padding rows
 * were never read), and dW is that Conv's weight gradient with dY as its input and X as its output gradient.
 */
function convTransposeGrad(ctx: GradContext): (Value | undefined)[] {
  const n = ctx.node;
  const [xs, ws, ys] = [n.input(0), n.input(1), n.output()].map((v) => ctx.shape(v)) as [
    number[],
    number[],
    number[],
  ];
  if (xs.length !== 4) ctx.fail(`only 2-D ConvTranspose has a backward rule (input rank ${xs.length})`);
  if (n.attrString('auto_pad', 'NOTSET') !== 'NOTSET' || n.attr('output_shape'))
    ctx.fail('ConvTranspose with auto_pad or output_shape has no backward rule (explicit pads only)');
  const group = n.attrInt('group', 1);
  const k = ws.slice(2);
  const s = n.attrInts('strides', [1, 1]);
  const d = n.attrInts('dilations', [1, 1]);
  const p = n.attrInts('pads', [0, 0, 0, 0]);
  const dy = ctx.dy()!;
  const adjoint: ConvGeometry = {
    n: xs[0]!,
    cin: ys[1]!,
    cout: xs[1]!,
    group,
    x: ys.slice(2),
    y: xs.slice(2),
    k,
    s,
    d,
    p,
  };
  return [
    ctx.needs(0)
      ? ctx.e.op('Conv', [dy, n.input(1)], { group, kernel_shape: k, strides: s, pads: p, dilations: d })
      : undefined,
    ctx.needs(1) ? weightGrad(ctx, adjoint, dy, n.input(0)) : undefined,
    ctx.needs(2) ? ctx.e.reduceSum(dy, [0, 2, 3], false) : undefined,
  ];
}

export const convRules: Record<string, GradRule> = {
  ConvTranspose: convTransposeGrad,
  Conv: (ctx) => {
    const g = geometry(ctx);
    const dy = ctx.dy()!;
    const [x, w] = [ctx.node.input(0), ctx.node.input(1)];
    return [
      ctx.needs(0) ? inputGrad(ctx, g, dy, w) : undefined,
      ctx.needs(1) ? weightGrad(ctx, g, x, dy) : undefined,
      ctx.needs(2) ? ctx.e.reduceSum(dy, [0, 2, 3], false) : undefined,
    ];
  },
};
