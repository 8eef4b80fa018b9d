import { AttributeType } from '../ir/attribute.js';
import { DataType, dataTypeName, storageOf, type TypedArray } from '../ir/data-type.js';
import type { Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';

/**
 * A small evaluator of ONNX ops on constant tensors, for folding the shape/pad subgraphs exporters emit.
 * Integer math is exact (int64 as bigint, wrapping like C++); float32 results are rounded to float32 after
 * every op (typed-array stores round), which is what onnxruntime computes for + - * / and sqrt. Anything it
 * cannot do exactly throws CannotEvaluate, so callers leave that node alone.
 */
export class CannotEvaluate extends Error {}

export interface EvalOptions {
  /** Refuse to produce tensors with more elements than this (default 1<<20): folding must stay cheap. */
  maxElements?: number;
}

type Scalar = number | bigint;
type Evaluator = (node: Node, inputs: readonly (Tensor | undefined)[], ctx: EvalContext) => Tensor[];

interface EvalContext {
  opset: number;
  maxElements: number;
}

/** Ops whose result depends only on their inputs and attributes (no randomness), so folding is sound. */
export function canEvaluate(opType: string, domain = ''): boolean {
  return (domain === '' || domain === 'ai.onnx') && Object.prototype.hasOwnProperty.call(EVALUATORS, opType);
}

/** Evaluates `node` on constant inputs (undefined = absent optional input). Throws CannotEvaluate. */
export function evaluateNode(
  node: Node,
  inputs: readonly (Tensor | undefined)[],
  opset: number,
  options: EvalOptions = {},
): Tensor[] {
  if (!canEvaluate(node.opType, node.domain)) throw new CannotEvaluate(`no evaluator for ${node.opType}`);
  for (const t of inputs)
    if (t && (t.dataType === DataType.STRING || !isArithmeticType(t.dataType)))
      throw new CannotEvaluate(`unsupported input type ${dataTypeName(t.dataType)}`);
  return EVALUATORS[node.opType]!(node, inputs, { opset, maxElements: options.maxElements ?? 1 << 20 });
}

function isArithmeticType(t: DataType): boolean {
  return ARITHMETIC_TYPES.has(t);
}
const ARITHMETIC_TYPES = new Set([
  DataType.FLOAT,
  DataType.DOUBLE,
  DataType.INT8,
  DataType.UINT8,
  DataType.INT16,
  DataType.UINT16,
  DataType.INT32,
  DataType.UINT32,
  DataType.INT64,
  DataType.UINT64,
  DataType.BOOL,
]);
const isBigType = (t: DataType): boolean => t === DataType.INT64 || t === DataType.UINT64;
const isFloatType = (t: DataType): boolean => t === DataType.FLOAT || t === DataType.DOUBLE;

// ---------------------------------------------------------------------------------------------- helpers

function need(inputs: readonly (Tensor | undefined)[], i: number, node: Node): Tensor {
  const t = inputs[i];
  if (!t) throw new CannotEvaluate(`${node.opType} '${node.name}' lacks input ${i}`);
  return t;
}

function make(
  ctx: EvalContext,
  dataType: DataType,
  dims: readonly number[],
  fill: (out: TypedArray) => void,
): Tensor {
  const size = dims.reduce((a, b) => a * b, 1);
  if (size > ctx.maxElements) throw new CannotEvaluate(`result of ${size} elements is too large to fold`);
  const storage = storageOf(dataType);
  if (!storage || !isArithmeticType(dataType))
    throw new CannotEvaluate(`unsupported result type ${dataTypeName(dataType)}`);
  const out = new storage.array(size);
  fill(out);
  return Tensor.fromArray(dataType, dims, out);
}

/** Integer values of a shape/index tensor as numbers (INT64_MAX and friends clamp to safe integers). */
export function tensorInts(t: Tensor): number[] {
  return Array.from(t.data as ArrayLike<Scalar>, (v) => {
    if (typeof v === 'bigint')
      return v > BigInt(Number.MAX_SAFE_INTEGER)
        ? Number.MAX_SAFE_INTEGER
        : v < BigInt(Number.MIN_SAFE_INTEGER)
          ? Number.MIN_SAFE_INTEGER
          : Number(v);
    return v;
  });
}

function strides(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1]! * dims[i + 1]!;
  return s;
}

function normAxis(axis: number, rank: number, node: Node): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    throw new CannotEvaluate(`axis ${axis} out of range for rank ${rank} in '${node.name}'`);
  return a;
}

export function broadcastShapes(shapes: readonly (readonly number[])[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const k = s.length - rank + i;
      const v = k >= 0 ? s[k]! : 1;
      if (v === 1) continue;
      if (d !== 1 && d !== v)
        throw new CannotEvaluate(`shapes [${shapes.map((x) => x.join(',')).join('] [')}] do not broadcast`);
      d = v;
    }
    out.push(d);
  }
  return out;
}

/** Calls `fn` with the broadcast elements of each input for every output position. */
function broadcastMap(
  ctx: EvalContext,
  inputs: readonly Tensor[],
  outType: DataType,
  fn: (v: Scalar[]) => Scalar,
): Tensor {
  const dims = broadcastShapes(inputs.map((t) => t.dims));
  const rank = dims.length;
  const inStrides = inputs.map((t) => {
    const s = strides(t.dims);
    return dims.map((d, i) => {
      const k = t.dims.length - rank + i;
      return k >= 0 && t.dims[k] !== 1 ? s[k]! : 0;
    });
  });
  const datas = inputs.map((t) => t.data as ArrayLike<Scalar>);
  const big = isBigType(outType);
  return make(ctx, outType, dims, (out) => {
    const idx = new Array<number>(rank).fill(0);
    const vals = new Array<Scalar>(inputs.length);
    for (let o = 0; o < out.length; o++) {
      for (let j = 0; j < inputs.length; j++) {
        let off = 0;
        for (let i = 0; i < rank; i++) off += idx[i]! * inStrides[j]![i]!;
        vals[j] = datas[j]![off]!;
      }
      const r = fn(vals);
      (out as unknown as Scalar[])[o] = big ? (typeof r === 'bigint' ? r : BigInt(r)) : Number(r);
      for (let i = rank - 1; i >= 0; i--) {
        if (++idx[i]! < dims[i]!) break;
        idx[i] = 0;
      }
    }
  });
}

function sameType(node: Node, ts: readonly Tensor[]): DataType {
  const t = ts[0]!.dataType;
  for (const x of ts)
    if (x.dataType !== t)
      throw new CannotEvaluate(`'${node.name}' mixes ${dataTypeName(t)} and ${dataTypeName(x.dataType)}`);
  return t;
}

/** Gathers elements of `t` at `index` positions laid out as `dims` (used by Slice, Transpose, Expand...). */
function remap(
  ctx: EvalContext,
  t: Tensor,
  dims: readonly number[],
  source: (outIndex: number[]) => number,
): Tensor {
  const src = t.data as ArrayLike<Scalar>;
  return make(ctx, t.dataType, dims, (out) => {
    const idx = new Array<number>(dims.length).fill(0);
    for (let o = 0; o < out.length; o++) {
      (out as unknown as Scalar[])[o] = src[source(idx)]!;
      for (let i = dims.length - 1; i >= 0; i--) {
        if (++idx[i]! < dims[i]!) break;
        idx[i] = 0;
      }
    }
  });
}

function withDims(t: Tensor, dims: readonly number[]): Tensor {
  return Tensor.fromArray(t.dataType, dims, t.data);
}

/** Axes from the attribute (older opsets) or from input `inputIndex` (newer). */
function axesOf(
  node: Node,
  inputs: readonly (Tensor | undefined)[],
  inputIndex: number,
): number[] | undefined {
  const fromInput = inputs[inputIndex];
  if (fromInput) return tensorInts(fromInput);
  if (node.inputs[inputIndex]) throw new CannotEvaluate(`axes of '${node.name}' are not constant`);
  return node.attrInts('axes');
}

// -------------------------------------------------------------------------------------- elementwise math

function binaryArith(op: (a: Scalar, b: Scalar, t: DataType) => Scalar): Evaluator {
  return (node, inputs, ctx) => {
    const a = need(inputs, 0, node);
    const b = need(inputs, 1, node);
    const t = sameType(node, [a, b]);
    if (t === DataType.BOOL) throw new CannotEvaluate('arithmetic on bool');
    return [broadcastMap(ctx, [a, b], t, ([x, y]) => op(x!, y!, t))];
  };
}

const add = (a: Scalar, b: Scalar): Scalar =>
  typeof a === 'bigint' ? a + (b as bigint) : (a as number) + (b as number);
const sub = (a: Scalar, b: Scalar): Scalar =>
  typeof a === 'bigint' ? a - (b as bigint) : (a as number) - (b as number);
const mul = (a: Scalar, b: Scalar, t: DataType): Scalar => {
  if (typeof a === 'bigint') return a * (b as bigint);
  if (t === DataType.INT32 || t === DataType.UINT32) return Math.imul(a, b as number);
  return a * (b as number);
};
const div = (a: Scalar, b: Scalar, t: DataType): Scalar => {
  if (typeof a === 'bigint') {
    if (b === 0n) throw new CannotEvaluate('integer division by zero');
    return a / (b as bigint);
  }
  if (isFloatType(t)) return a / (b as number);
  if (b === 0) throw new CannotEvaluate('integer division by zero');
  return Math.trunc(a / (b as number));
};
const pow = (a: Scalar, b: Scalar, t: DataType): Scalar => {
  // onnxruntime computes x^1 and x^2 as products; other exponents go through std::pow, which JS cannot match.
  if (isFloatType(t) && Number(b) !== 2 && Number(b) !== 1)
    throw new CannotEvaluate('float Pow other than x^1, x^2');
  if (typeof a === 'bigint') return a ** (b as bigint);
  const r = a ** Number(b);
  return isFloatType(t) ? r : Math.trunc(r);
};

function minMax(pick: (a: Scalar, b: Scalar) => Scalar): Evaluator {
  return (node, inputs, ctx) => {
    const ts = inputs.map((_, i) => need(inputs, i, node));
    const t = sameType(node, ts);
    return [broadcastMap(ctx, ts, t, (vs) => vs.reduce((a, b) => pick(a, b)))];
  };
}

function compare(op: (a: Scalar, b: Scalar) => boolean): Evaluator {
  return (node, inputs, ctx) => {
    const a = need(inputs, 0, node);
    const b = need(inputs, 1, node);
    sameType(node, [a, b]);
    return [broadcastMap(ctx, [a, b], DataType.BOOL, ([x, y]) => (op(x!, y!) ? 1 : 0))];
  };
}

function logical(op: (a: boolean, b: boolean) => boolean): Evaluator {
  return (node, inputs, ctx) => [
    broadcastMap(ctx, [need(inputs, 0, node), need(inputs, 1, node)], DataType.BOOL, ([x, y]) =>
      op(x !== 0, y !== 0) ? 1 : 0,
    ),
  ];
}

/** A unary op; only correctly rounded functions are here (sqrt is; exp and log are not, so they are absent). */
function unary(op: (a: Scalar, t: DataType) => Scalar): Evaluator {
  return (node, inputs, ctx) => {
    const a = need(inputs, 0, node);
    return [broadcastMap(ctx, [a], a.dataType, ([x]) => op(x!, a.dataType))];
  };
}

const num =
  (f: (x: number) => number) =>
  (a: Scalar): Scalar => {
    if (typeof a === 'bigint') throw new CannotEvaluate('float function on an integer tensor');
    return f(a);
  };

// ------------------------------------------------------------------------------------------ conversions

function castScalar(v: Scalar, to: DataType): Scalar {
  if (to === DataType.BOOL) return v !== 0 && v !== 0n ? 1 : 0;
  if (isBigType(to)) {
    if (typeof v === 'bigint') return v;
    if (!Number.isFinite(v)) throw new CannotEvaluate('casting a non-finite float to an integer');
    return BigInt(Math.trunc(v));
  }
  if (isFloatType(to)) return Number(v);
  // Narrow integer targets: truncate toward zero, then the typed-array store wraps.
  const n = typeof v === 'bigint' ? Number(BigInt.asIntN(32, v)) : v;
  if (!Number.isFinite(n)) throw new CannotEvaluate('casting a non-finite float to an integer');
  return Math.trunc(n);
}

function cast(ctx: EvalContext, t: Tensor, to: DataType): Tensor {
  const src = t.data as ArrayLike<Scalar>;
  const big = isBigType(to);
  return make(ctx, to, t.dims, (out) => {
    for (let i = 0; i < out.length; i++) {
      const v = castScalar(src[i]!, to);
      (out as unknown as Scalar[])[i] = big ? BigInt(v) : Number(v);
    }
  });
}

/** The tensor a Constant node holds, whichever value_* attribute it uses. */
function constantValue(node: Node, ctx: EvalContext): Tensor {
  const [name, a] = [...node.attributes][0] ?? [];
  if (!a) throw new CannotEvaluate(`Constant '${node.name}' has no value`);
  switch (name) {
    case 'value':
      if (a.type !== AttributeType.TENSOR) break;
      if (a.value.dataType === DataType.STRING) throw new CannotEvaluate('string constant');
      return a.value;
    case 'value_float':
      if (a.type === AttributeType.FLOAT) return make(ctx, DataType.FLOAT, [], (o) => (o[0] = a.value));
      break;
    case 'value_floats':
      if (a.type === AttributeType.FLOATS) return Tensor.fromArray(DataType.FLOAT, [a.value.length], a.value);
      break;
    case 'value_int':
      if (a.type === AttributeType.INT) return Tensor.int64([a.value], []);
      break;
    case 'value_ints':
      if (a.type === AttributeType.INTS) return Tensor.int64(a.value);
      break;
  }
  throw new CannotEvaluate(`Constant '${node.name}' holds a ${name} the evaluator does not model`);
}

// --------------------------------------------------------------------------------------- shape handling

/** Output dims of Reshape given its target (0 copies the input dim unless allowzero, -1 is inferred). */
export function reshapeDims(
  inDims: readonly number[],
  target: readonly number[],
  allowzero: boolean,
): number[] {
  const size = inDims.reduce((a, b) => a * b, 1);
  let known = 1;
  let minus = -1;
  const out = target.map((d, i) => {
    if (d === 0 && !allowzero) {
      if (i >= inDims.length) throw new CannotEvaluate('Reshape copies a dim the input lacks');
      d = inDims[i]!;
    }
    if (d === -1) {
      if (minus >= 0) throw new CannotEvaluate('Reshape has two -1 dims');
      minus = i;
      return -1;
    }
    if (d < 0) throw new CannotEvaluate(`Reshape dim ${d}`);
    known *= d;
    return d;
  });
  if (minus >= 0) {
    if (known === 0 || size % known !== 0) throw new CannotEvaluate('Reshape -1 does not divide');
    out[minus] = size / known;
  } else if (known !== size) throw new CannotEvaluate(`Reshape of ${size} elements to [${out}]`);
  return out;
}

/** Per-axis [start, step, count] of a Slice after ONNX's clamping rules. */
export function sliceRanges(
  dims: readonly number[],
  starts: readonly number[],
  ends: readonly number[],
  axes: readonly number[] | undefined,
  steps: readonly number[] | undefined,
): { start: number; step: number; count: number }[] {
  const ranges = dims.map((d) => ({ start: 0, step: 1, count: d }));
  starts.forEach((s, k) => {
    const rank = dims.length;
    let axis = axes ? axes[k]! : k;
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= rank) throw new CannotEvaluate(`Slice axis ${axes?.[k]} out of range`);
    const d = dims[axis]!;
    const step = steps ? steps[k]! : 1;
    if (step === 0) throw new CannotEvaluate('Slice step 0');
    let start = s < 0 ? s + d : s;
    let end = ends[k]! < 0 ? ends[k]! + d : ends[k]!;
    if (step > 0) {
      start = Math.min(Math.max(start, 0), d);
      end = Math.min(Math.max(end, 0), d);
    } else {
      start = Math.min(Math.max(start, -1), d - 1);
      end = Math.min(Math.max(end, -1), d - 1);
    }
    const count = Math.max(0, Math.ceil((end - start) / step));
    ranges[axis] = { start, step, count };
  });
  return ranges;
}

function sliceArgs(node: Node, inputs: readonly (Tensor | undefined)[], ctx: EvalContext) {
  if (ctx.opset < 10)
    return {
      starts: node.attrInts('starts', []),
      ends: node.attrInts('ends', []),
      axes: node.attrInts('axes'),
      steps: undefined,
    };
  const opt = (i: number): number[] | undefined => {
    if (inputs[i]) return tensorInts(inputs[i]!);
    if (node.inputs[i]) throw new CannotEvaluate(`Slice input ${i} is not constant`);
    return undefined;
  };
  return {
    starts: tensorInts(need(inputs, 1, node)),
    ends: tensorInts(need(inputs, 2, node)),
    axes: opt(3),
    steps: opt(4),
  };
}

/** Dims after Unsqueeze with `axes` (negative axes count in the output rank). */
export function unsqueezeDims<D>(dims: readonly D[], axes: readonly number[], one: D): D[] {
  const rank = dims.length + axes.length;
  const norm = new Set(axes.map((a) => (a < 0 ? a + rank : a)));
  if (norm.size !== axes.length || [...norm].some((a) => a < 0 || a >= rank))
    throw new CannotEvaluate(`Unsqueeze axes [${axes}]`);
  const out: D[] = [];
  let k = 0;
  for (let i = 0; i < rank; i++) out.push(norm.has(i) ? one : dims[k++]!);
  return out;
}

function reduce(kind: 'sum' | 'prod' | 'max' | 'min' | 'mean'): Evaluator {
  return (node, inputs, ctx) => {
    const x = need(inputs, 0, node);
    // onnxruntime's float sums run in its own order (and mean may scale by 1/n): only exact cases are folded.
    if (isFloatType(x.dataType) && kind === 'mean')
      throw new CannotEvaluate('float ReduceMean may round differently');
    const axesFromInput = kind === 'sum' ? ctx.opset >= 13 : ctx.opset >= 18;
    const given = axesFromInput ? axesOf(node, inputs, 1) : node.attrInts('axes');
    const keep = node.attrInt('keepdims', 1) === 1;
    const rank = x.dims.length;
    if ((!given || given.length === 0) && node.attrInt('noop_with_empty_axes', 0) === 1) return [x];
    const axes = new Set(
      (given && given.length ? given : x.dims.map((_, i) => i)).map((a) => normAxis(a, rank, node)),
    );
    if (isFloatType(x.dataType) && x.size > 2 && (kind === 'sum' || kind === 'prod'))
      throw new CannotEvaluate('float reductions may sum in a different order than onnxruntime');
    const outDims = x.dims.map((d, i) => (axes.has(i) ? 1 : d));
    const src = x.data as ArrayLike<Scalar>;
    const xs = strides(x.dims);
    const os = strides(outDims);
    const acc: (Scalar | undefined)[] = new Array(outDims.reduce((a, b) => a * b, 1)).fill(undefined);
    const count = x.dims.reduce((a, d, i) => (axes.has(i) ? a * d : a), 1);
    for (let i = 0; i < src.length; i++) {
      let o = 0;
      for (let k = 0; k < rank; k++) if (!axes.has(k)) o += (Math.floor(i / xs[k]!) % x.dims[k]!) * os[k]!;
      const v = src[i]!;
      const a = acc[o];
      acc[o] =
        a === undefined
          ? v
          : kind === 'sum' || kind === 'mean'
            ? add(a, v)
            : kind === 'prod'
              ? mul(a, v, x.dataType)
              : (kind === 'max' ? v > a : v < a)
                ? v
                : a;
    }
    const dims = keep ? outDims : x.dims.filter((_, i) => !axes.has(i));
    return [
      make(ctx, x.dataType, dims, (out) => {
        for (let i = 0; i < out.length; i++) {
          let v = acc[i] ?? (kind === 'prod' ? 1 : 0);
          if (kind === 'mean')
            v =
              typeof v === 'bigint'
                ? v / BigInt(count)
                : isFloatType(x.dataType)
                  ? v / count
                  : Math.trunc(v / count);
          (out as unknown as Scalar[])[i] = isBigType(x.dataType) ? BigInt(v) : Number(v);
        }
      }),
    ];
  };
}

// ------------------------------------------------------------------------------------------- the table

const EVALUATORS: Record<string, Evaluator> = {
  Identity: (node, inputs) => [need(inputs, 0, node)],
  Constant: (node, _inputs, ctx) => [constantValue(node, ctx)],
  Shape: (node, inputs) => {
    const dims = need(inputs, 0, node).dims;
    const rank = dims.length;
    const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + rank : v, 0), rank);
    const start = clamp(node.attrInt('start', 0));
    const end = clamp(node.attrInt('end', rank));
    return [Tensor.int64(dims.slice(start, Math.max(start, end)))];
  },
  Size: (node, inputs) => [Tensor.int64([need(inputs, 0, node).size], [])],
  ConstantOfShape: (node, inputs, ctx) => {
    const dims = tensorInts(need(inputs, 0, node));
    const a = node.attr('value');
    const value = a?.type === AttributeType.TENSOR ? a.value : Tensor.scalarFloat(0);
    const v = (value.data as ArrayLike<Scalar>)[0] ?? 0;
    return [make(ctx, value.dataType, dims, (out) => (out as unknown as Scalar[]).fill(v))];
  },
  Cast: (node, inputs, ctx) => {
    const to = node.attrInt('to') as DataType | undefined;
    if (to === undefined) throw new CannotEvaluate('Cast without to');
    return [cast(ctx, need(inputs, 0, node), to)];
  },
  Add: binaryArith(add),
  Sub: binaryArith(sub),
  Mul: binaryArith(mul),
  Div: binaryArith(div),
  Pow: (node, inputs, ctx) => {
    const a = need(inputs, 0, node);
    const b = cast(ctx, need(inputs, 1, node), a.dataType);
    return [broadcastMap(ctx, [a, b], a.dataType, ([x, y]) => pow(x!, y!, a.dataType))];
  },
  Max: minMax((a, b) => (b > a ? b : a)),
  Min: minMax((a, b) => (b < a ? b : a)),
  Equal: compare((a, b) => a === b),
  Less: compare((a, b) => a < b),
  LessOrEqual: compare((a, b) => a <= b),
  Greater: compare((a, b) => a > b),
  GreaterOrEqual: compare((a, b) => a >= b),
  And: logical((a, b) => a && b),
  Or: logical((a, b) => a || b),
  Xor: logical((a, b) => a !== b),
  Not: unary((a) => (a ? 0 : 1)),
  Neg: unary((a) => (typeof a === 'bigint' ? -a : -a)),
  Abs: unary((a) => (a < 0 ? (typeof a === 'bigint' ? -a : -a) : a)),
  Sign: unary((a) => (typeof a === 'bigint' ? (a > 0n ? 1n : a < 0n ? -1n : 0n) : Math.sign(a))),
  Sqrt: unary(num(Math.sqrt)),
  Floor: unary((a) => (typeof a === 'bigint' ? a : Math.floor(a))),
  Ceil: unary((a) => (typeof a === 'bigint' ? a : Math.ceil(a))),
  Reciprocal: unary(num((x) => 1 / x)),
  Relu: unary((a) => (a > 0 ? a : typeof a === 'bigint' ? 0n : 0)),
  Where: (node, inputs, ctx) => {
    const [c, x, y] = [0, 1, 2].map((i) => need(inputs, i, node)) as [Tensor, Tensor, Tensor];
    const t = sameType(node, [x, y]);
    return [broadcastMap(ctx, [c, x, y], t, ([cv, xv, yv]) => (cv ? xv! : yv!))];
  },
  Expand: (node, inputs, ctx) => {
    const x = need(inputs, 0, node);
    const shape = tensorInts(need(inputs, 1, node));
    const dims = broadcastShapes([x.dims, shape]);
    const ones = make(ctx, x.dataType, dims, (o) =>
      (o as unknown as Scalar[]).fill(isBigType(x.dataType) ? 0n : 0),
    );
    return [broadcastMap(ctx, [x, ones], x.dataType, ([v]) => v!)];
  },
  Range: (node, inputs, ctx) => {
    const [s, l, d] = [0, 1, 2].map((i) => need(inputs, i, node)) as [Tensor, Tensor, Tensor];
    const t = sameType(node, [s, l, d]);
    if (t === DataType.FLOAT) throw new CannotEvaluate('float32 Range accumulates differently');
    const [start, limit, delta] = [s, l, d].map((x) => Number((x.data as ArrayLike<Scalar>)[0]!)) as [
      number,
      number,
      number,
    ];
    if (delta === 0) throw new CannotEvaluate('Range delta 0');
    const n = Math.max(0, Math.ceil((limit - start) / delta));
    return [
      make(ctx, t, [n], (out) => {
        for (let i = 0; i < n; i++)
          (out as unknown as Scalar[])[i] = isBigType(t) ? BigInt(start + i * delta) : start + i * delta;
      }),
    ];
  },
  Reshape: (node, inputs) => {
    const x = need(inputs, 0, node);
    const target = tensorInts(need(inputs, 1, node));
    return [withDims(x, reshapeDims(x.dims, target, node.attrInt('allowzero', 0) === 1))];
  },
  Flatten: (node, inputs) => {
    const x = need(inputs, 0, node);
    const axis = node.attrInt('axis', 1);
    const a = axis < 0 ? axis + x.dims.length : axis;
    const head = x.dims.slice(0, a).reduce((p, q) => p * q, 1);
    return [withDims(x, [head, x.size / Math.max(head, 1) || 0])];
  },
  Unsqueeze: (node, inputs, ctx) => {
    const x = need(inputs, 0, node);
    const axes = ctx.opset >= 13 ? axesOf(node, inputs, 1) : node.attrInts('axes');
    if (!axes) throw new CannotEvaluate('Unsqueeze without axes');
    return [withDims(x, unsqueezeDims(x.dims, axes, 1))];
  },
  Squeeze: (node, inputs, ctx) => {
    const x = need(inputs, 0, node);
    const axes = ctx.opset >= 13 ? axesOf(node, inputs, 1) : node.attrInts('axes');
    const drop = new Set(
      (axes ?? x.dims.flatMap((d, i) => (d === 1 ? [i] : []))).map((a) => normAxis(a, x.dims.length, node)),
    );
    for (const a of drop)
      if (x.dims[a] !== 1) throw new CannotEvaluate(`Squeeze of a dim of size ${x.dims[a]}`);
    return [
      withDims(
        x,
        x.dims.filter((_, i) => !drop.has(i)),
      ),
    ];
  },
  Concat: (node, inputs, ctx) => {
    const ts = inputs.map((_, i) => need(inputs, i, node));
    const t = sameType(node, ts);
    const rank = ts[0]!.dims.length;
    const axis = normAxis(node.attrInt('axis', 0), rank, node);
    const dims = [...ts[0]!.dims];
    dims[axis] = ts.reduce((a, x) => a + x.dims[axis]!, 0);
    const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
    return [
      make(ctx, t, dims, (out) => {
        let o = 0;
        for (let i = 0; i < outer; i++) {
          for (const x of ts) {
            const block = x.dims.slice(axis).reduce((a, b) => a * b, 1);
            const src = x.data as ArrayLike<Scalar>;
            for (let k = 0; k < block; k++) (out as unknown as Scalar[])[o++] = src[i * block + k]!;
          }
        }
      }),
    ];
  },
  Gather: (node, inputs, ctx) => {
    const x = need(inputs, 0, node);
    const ind = need(inputs, 1, node);
    const axis = normAxis(node.attrInt('axis', 0), x.dims.length, node);
    const d = x.dims[axis]!;
    const indices = tensorInts(ind).map((i) => {
      const k = i < 0 ? i + d : i;
      if (k < 0 || k >= d) throw new CannotEvaluate(`Gather index ${i} out of range`);
      return k;
    });
    const dims = [...x.dims.slice(0, axis), ...ind.dims, ...x.dims.slice(axis + 1)];
    const xs = strides(x.dims);
    const ir = ind.dims.length;
    const indStrides = strides(ind.dims);
    return [
      remap(ctx, x, dims, (idx) => {
        let off = 0;
        for (let i = 0; i < axis; i++) off += idx[i]! * xs[i]!;
        let flat = 0;
        for (let i = 0; i < ir; i++) flat += idx[axis + i]! * indStrides[i]!;
        off += indices[flat]! * xs[axis]!;
        for (let i = axis + 1; i < x.dims.length; i++) off += idx[i + ir - 1]! * xs[i]!;
        return off;
      }),
    ];
  },
  Slice: (node, inputs, ctx) => {
    const x = need(inputs, 0, node);
    const { starts, ends, axes, steps } = sliceArgs(node, inputs, ctx);
    const ranges = sliceRanges(x.dims, starts, ends, axes, steps);
    const xs = strides(x.dims);
    return [
      remap(
        ctx,
        x,
        ranges.map((r) => r.count),
        (idx) => idx.reduce((off, v, i) => off + (ranges[i]!.start + v * ranges[i]!.step) * xs[i]!, 0),
      ),
    ];
  },
  Transpose: (node, inputs, ctx) => {
    const x = need(inputs, 0, node);
    const rank = x.dims.length;
    const perm = node.attrInts('perm') ?? x.dims.map((_, i) => rank - 1 - i);
    const xs = strides(x.dims);
    return [
      remap(
        ctx,
        x,
        perm.map((p) => x.dims[p]!),
        (idx) => idx.reduce((off, v, i) => off + v * xs[perm[i]!]!, 0),
      ),
    ];
  },
  Tile: (node, inputs, ctx) => {
    const x = need(inputs, 0, node);
    const reps = tensorInts(need(inputs, 1, node));
    const xs = strides(x.dims);
    return [
      remap(
        ctx,
        x,
        x.dims.map((d, i) => d * reps[i]!),
        (idx) => idx.reduce((off, v, i) => off + (v % x.dims[i]!) * xs[i]!, 0),
      ),
    ];
  },
  ReduceSum: reduce('sum'),
  ReduceProd: reduce('prod'),
  ReduceMax: reduce('max'),
  ReduceMin: reduce('min'),
  ReduceMean: reduce('mean'),
};
