import { constantOf } from '../../ir/constant.js';
import type { Value } from '../../ir/graph.js';
import type { GradContext, GradRule } from './types.js';

/** The interpolation a Resize (or Upsample) node performs along each axis. */
interface ResizeSpec {
  mode: 'nearest' | 'linear';
  transform: string;
  nearest: string;
  /** Per axis, the scale the coordinate transform divides by (the `scales` input, else output/input size). */
  scales: number[];
}

/** The float contents of `v` if it is a constant (or torch's Concat of constants), else undefined. */
function floatConstant(v: Value | undefined): number[] | undefined {
  if (!v) return undefined;
  const c = constantOf(v);
  if (c) return Array.from(c.data as ArrayLike<number>, Number);
  const p = v.producer;
  if (p?.opType !== 'Concat') return undefined;
  const parts = p.inputs.map(floatConstant);
  return parts.every((x) => x !== undefined) ? parts.flat() : undefined;
}

function resizeSpec(ctx: GradContext, inShape: number[], outShape: number[]): ResizeSpec {
  const n = ctx.node;
  const upsample = n.opType === 'Upsample';
  // Opset 10's Resize has (X, scales); from 11 (X, roi, scales, sizes). The step graph upgrades both older forms
  // to the opset-11 one (upgrade-opset.ts), keeping their asymmetric transform and floor rounding.
  const given = upsample
    ? (n.attrFloats('scales') ?? floatConstant(n.inputs[1]))
    : floatConstant(n.inputs.length === 2 ? n.inputs[1] : n.inputs[2]);
  const rawMode = n.attrString('mode', 'nearest');
  if (rawMode !== 'nearest' && rawMode !== 'linear' && rawMode !== 'bilinear')
    ctx.fail(`${n.opType} mode '${rawMode}' has no backward rule (nearest and linear only)`);
  if (n.attrInt('antialias', 0)) ctx.fail('Resize with antialias has no backward rule');
  const axes = n.attrInts('axes') ?? inShape.map((_, i) => i);
  const scales = inShape.map((d, i) => outShape[i]! / d);
  if (given?.length) axes.forEach((a, k) => (scales[(a + inShape.length) % inShape.length] = given[k]!));
  const transform = upsample
    ? 'asymmetric'
    : n.attrString('coordinate_transformation_mode', n.inputs.length === 2 ? 'asymmetric' : 'half_pixel');
  if (transform === 'tf_crop_and_resize') ctx.fail('Resize with tf_crop_and_resize has no backward rule');
  const old = upsample || n.inputs.length === 2;
  const nearest = old ? 'floor' : n.attrString('nearest_mode', 'round_prefer_floor');
  return { mode: rawMode === 'nearest' ? 'nearest' : 'linear', transform, nearest, scales };
}

/** The input coordinate output index `o` maps to (ONNX Resize's coordinate_transformation_mode). */
function sourceCoordinate(
  transform: string,
  o: number,
  inDim: number,
  outDim: number,
  scale: number,
): number {
  switch (transform) {
    case 'half_pixel':
      return (o + 0.5) / scale - 0.5;
    case 'pytorch_half_pixel':
      return outDim > 1 ? (o + 0.5) / scale - 0.5 : 0;
    case 'align_corners':
      return outDim > 1 ? (o * (inDim - 1)) / (outDim - 1) : 0;
    case 'tf_half_pixel_for_nearest':
      return (o + 0.5) / scale;
    case 'asymmetric':
      return o / scale;
    default:
      throw new Error(`coordinate_transformation_mode '${transform}'`);
  }
}

function nearestIndex(mode: string, x: number): number {
  const f = Math.floor(x);
  switch (mode) {
    case 'floor':
      return f;
    case 'ceil':
      return Math.ceil(x);
    case 'round_prefer_ceil':
      return x - f === 0.5 ? f + 1 : Math.round(x);
    default: // round_prefer_floor
      return x - f === 0.5 ? f : Math.round(x);
  }
}

/**
 * The [out, in] matrix A with y = A x along one axis: a one per row for nearest (the index clamped into the
 * input, as onnxruntime does), the two linear weights otherwise (the coordinate clamped to [0, in-1], which is
 * torch's align_corners=False rule: negative coordinates read row 0, past the end the last row).
 */
function axisMatrix(spec: ResizeSpec, inDim: number, outDim: number, scale: number): Float64Array {
  const a = new Float64Array(outDim * inDim);
  for (let o = 0; o < outDim; o++) {
    const x = sourceCoordinate(spec.transform, o, inDim, outDim, scale);
    if (spec.mode === 'nearest') {
      const i = Math.min(Math.max(nearestIndex(spec.nearest, x), 0), inDim - 1);
      a[o * inDim + i] = 1;
      continue;
    }
    const c = Math.min(Math.max(x, 0), inDim - 1);
    const i0 = Math.floor(c);
    const i1 = Math.min(i0 + 1, inDim - 1);
    const l = c - i0;
    a[o * inDim + i0] += 1 - l;
    a[o * inDim + i1] += l;
  }
  return a;
}

function isIdentity(a: Float64Array, n: number): boolean {
  return a.length === n * n && a.every((v, k) => v === (Math.floor(k / n) === k % n ? 1 : 0));
}

/** Whether A repeats each input row `factor` times in order (nearest upsampling by an integer factor). */
function isBlockRepeat(a: Float64Array, inDim: number, outDim: number): boolean {
  if (outDim % inDim !== 0) return false;
  const f = outDim / inDim;
  return a.every((v, k) => v === (Math.floor(Math.floor(k / inDim) / f) === k % inDim ? 1 : 0));
}

/**
 * dX = A^T dY along every resized axis (Resize is linear and separable, nearest and linear alike). Where every
 * resized axis only repeats rows (nearest upsampling by integer factors, YOLO's nn.Upsample), one Reshape that
 * splits each axis into (in, factor) and one ReduceSum over the factors; otherwise one MatMul per axis with the
 * constant matrix (A for the last axis, A^T from the left for the one before it, a Transpose around others).
 */
function resizeGrad(ctx: GradContext): Value {
  const e = ctx.e;
  const inShape = ctx.shape(ctx.node.input(0));
  const outShape = ctx.shape(ctx.node.output());
  const spec = resizeSpec(ctx, inShape, outShape);
  const rank = inShape.length;
  const mats = inShape.map((d, i) => axisMatrix(spec, d, outShape[i]!, spec.scales[i]!));
  const resized = inShape.map((_, i) => i).filter((i) => !isIdentity(mats[i]!, inShape[i]!));
  let g = ctx.dy()!;
  if (resized.every((i) => isBlockRepeat(mats[i]!, inShape[i]!, outShape[i]!))) {
    const split = outShape.flatMap((d, i) => (resized.includes(i) ? [inShape[i]!, d / inShape[i]!] : [d]));
    const factorAxes = resized.map((i, k) => i + k + 1);
    return e.reshape(e.reduceSum(e.reshape(g, split), factorAxes, false), inShape);
  }
  for (const i of [...resized].reverse()) {
    const [inDim, outDim] = [inShape[i]!, outShape[i]!];
    const m = Float32Array.from(mats[i]!);
    if (i === rank - 1) {
      g = e.op('MatMul', [g, e.floats(m, [outDim, inDim], 'resize_matrix')]);
    } else if (i === rank - 2) {
      const t = new Float32Array(inDim * outDim);
      for (let o = 0; o < outDim; o++) for (let k = 0; k < inDim; k++) t[k * outDim + o] = m[o * inDim + k]!;
      g = e.op('MatMul', [e.floats(t, [inDim, outDim], 'resize_matrix_t'), g]);
    } else {
      const perm = [...Array(rank).keys()].filter((a) => a !== i).concat(i);
      const moved = e.op('MatMul', [e.transpose(g, perm), e.floats(m, [outDim, inDim], 'resize_matrix')]);
      g = e.transpose(
        moved,
        perm.map((_, a) => perm.indexOf(a)),
      );
    }
  }
  return g;
}

export const resizeRules: Record<string, GradRule> = {
  Resize: (ctx) => [resizeGrad(ctx)],
  Upsample: (ctx) => [resizeGrad(ctx)],
};
