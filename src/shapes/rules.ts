import { DataType } from '../ir/data-type.js';
import type { Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import type { Dim } from '../ir/types.js';
import { sliceRanges, unsqueezeDims } from '../folding/const-eval.js';
import { ShapeError, broadcast, dimArith, divide, normalizeAxis, product, productDim } from './dims.js';

/** What is known about one tensor value. */
export interface TensorInfo {
  elemType: DataType | undefined;
  shape: Dim[] | undefined;
}

/**
 * What a rule learned about one output. `values` are the elements of a small integer tensor (a shape being
 * computed), possibly symbolic: Shape of [N,3,32,32] has values [N,3,32,32] even though it is not constant.
 */
export interface OutputInfo {
  elemType?: DataType | undefined;
  shape?: Dim[] | undefined;
  values?: Dim[] | undefined;
}

export interface RuleContext {
  node: Node;
  opset: number;
  /** Whether optional input `i` is present. */
  has(i: number): boolean;
  shape(i: number): Dim[] | undefined;
  elemType(i: number): DataType | undefined;
  constant(i: number): Tensor | undefined;
  /** Element values of input `i` (a 0-D/1-D integer tensor), symbolic where only the batch is known. */
  values(i: number): Dim[] | undefined;
}

export type ShapeRule = (c: RuleContext) => (OutputInfo | undefined)[];

/** Values as plain numbers when all are known. */
function ints(c: RuleContext, i: number): number[] | undefined {
  const v = c.values(i);
  return v && v.every((d): d is number => typeof d === 'number') ? v : undefined;
}

const same: ShapeRule = (c) => [{ elemType: c.elemType(0), shape: c.shape(0) }];

/** Same shape and the values carried through (Identity, Cast between integer types). */
const passValues: ShapeRule = (c) => [{ elemType: c.elemType(0), shape: c.shape(0), values: c.values(0) }];

function elementwise(outType?: DataType): ShapeRule {
  return (c) => {
    const shapes = c.node.inputs.map((_, i) => c.shape(i));
    const elemType = outType ?? c.elemType(c.node.opType === 'Where' ? 1 : 0);
    if (shapes.some((s) => s === undefined)) return [{ elemType }];
    const shape = broadcast(shapes as Dim[][]);
    const out: OutputInfo = { elemType, shape };
    const op = c.node.opType;
    if (['Add', 'Sub', 'Mul', 'Div', 'Max', 'Min'].includes(op) && shape.length <= 1) {
      const [a, b] = [c.values(0), c.values(1)];
      if (a && b) {
        const n = typeof shape[0] === 'number' ? shape[0] : Math.max(a.length, b.length);
        out.values = Array.from({ length: shape.length === 0 ? 1 : n }, (_, k) =>
          dimArith(op, a[a.length === 1 ? 0 : k] ?? null, b[b.length === 1 ? 0 : k] ?? null),
        );
      }
    }
    return [out];
  };
}

function attrOrInput(c: RuleContext, attr: string, input: number, fromInput: boolean): number[] | undefined {
  if (fromInput) return c.has(input) ? ints(c, input) : undefined;
  return c.node.attrInts(attr);
}

// ------------------------------------------------------------------------------------ convolution, pooling

interface Window {
  kernel: number[];
  strides: number[];
  dilations: number[];
  pads: number[];
  autoPad: string;
}

function windowOf(node: Node, spatial: number, kernel: number[]): Window {
  return {
    kernel,
    strides: node.attrInts('strides', new Array(spatial).fill(1)),
    dilations: node.attrInts('dilations', new Array(spatial).fill(1)),
    pads: node.attrInts('pads', new Array(spatial * 2).fill(0)),
    autoPad: node.attrString('auto_pad', 'NOTSET'),
  };
}

function windowOutput(inDim: Dim, w: Window, i: number, ceilMode: boolean): Dim {
  if (typeof inDim !== 'number') return null;
  const k = w.kernel[i]!;
  const s = w.strides[i]!;
  const d = w.dilations[i]!;
  const effective = d * (k - 1) + 1;
  if (w.autoPad === 'SAME_UPPER' || w.autoPad === 'SAME_LOWER') return Math.ceil(inDim / s);
  if (w.autoPad === 'VALID') return Math.floor((inDim - effective) / s) + 1;
  const head = w.pads[i]!;
  const total = inDim + head + w.pads[i + w.kernel.length]! - effective;
  if (!ceilMode) return Math.floor(total / s) + 1;
  let out = Math.ceil(total / s) + 1;
  // onnxruntime drops a last window that would start entirely in the right padding.
  if ((out - 1) * s >= inDim + head) out--;
  return out;
}

const conv: ShapeRule = (c) => {
  const x = c.shape(0);
  const w = c.shape(1);
  const elemType = c.elemType(0);
  if (!x) return [{ elemType }];
  const spatial = x.length - 2;
  const kernel = c.node.attrInts('kernel_shape') ?? (w ? (w.slice(2) as number[]) : undefined);
  const channels = w ? w[0]! : null;
  if (!kernel || kernel.some((k) => typeof k !== 'number'))
    return [{ elemType, shape: [x[0]!, channels, ...new Array<Dim>(spatial).fill(null)] }];
  const win = windowOf(c.node, spatial, kernel);
  return [
    { elemType, shape: [x[0]!, channels, ...x.slice(2).map((d, i) => windowOutput(d, win, i, false))] },
  ];
};

const convTranspose: ShapeRule = (c) => {
  const x = c.shape(0);
  const w = c.shape(1);
  const elemType = c.elemType(0);
  if (!x) return [{ elemType }];
  const spatial = x.length - 2;
  const group = c.node.attrInt('group', 1);
  const channels = w && typeof w[1] === 'number' ? w[1] * group : null;
  const kernel = c.node.attrInts('kernel_shape') ?? (w ? (w.slice(2) as number[]) : undefined);
  const explicit = c.node.attrInts('output_shape');
  if (explicit) return [{ elemType, shape: [x[0]!, channels, ...explicit.slice(-spatial)] }];
  if (!kernel || kernel.some((k) => typeof k !== 'number'))
    return [{ elemType, shape: [x[0]!, channels, ...new Array<Dim>(spatial).fill(null)] }];
  const win = windowOf(c.node, spatial, kernel);
  const outPad = c.node.attrInts('output_padding', new Array(spatial).fill(0));
  const dims = x.slice(2).map((d, i): Dim => {
    if (typeof d !== 'number') return null;
    if (win.autoPad === 'SAME_UPPER' || win.autoPad === 'SAME_LOWER') return d * win.strides[i]!;
    const pads = win.autoPad === 'VALID' ? 0 : win.pads[i]! + win.pads[i + spatial]!;
    return win.strides[i]! * (d - 1) + outPad[i]! + (kernel[i]! - 1) * win.dilations[i]! + 1 - pads;
  });
  return [{ elemType, shape: [x[0]!, channels, ...dims] }];
};

const pool: ShapeRule = (c) => {
  const x = c.shape(0);
  const elemType = c.elemType(0);
  if (!x) return [{ elemType }, { elemType: DataType.INT64 }];
  const kernel = c.node.attrInts('kernel_shape');
  if (!kernel) throw new ShapeError('pool without kernel_shape');
  const win = windowOf(c.node, kernel.length, kernel);
  const shape = [
    x[0]!,
    x[1]!,
    ...x.slice(2).map((d, i) => windowOutput(d, win, i, c.node.attrInt('ceil_mode', 0) === 1)),
  ];
  return [
    { elemType, shape },
    { elemType: DataType.INT64, shape },
  ];
};

const globalPool: ShapeRule = (c) => {
  const x = c.shape(0);
  return [{ elemType: c.elemType(0), shape: x ? [x[0]!, x[1]!, ...x.slice(2).map(() => 1)] : undefined }];
};

// ------------------------------------------------------------------------------------ shape manipulation

function reduceRule(axesFromInputSince: number): ShapeRule {
  return (c) => {
    const x = c.shape(0);
    const elemType = c.elemType(0);
    if (!x) return [{ elemType }];
    const fromInput = c.opset >= axesFromInputSince;
    const axes = attrOrInput(c, 'axes', 1, fromInput);
    if (fromInput && c.has(1) && !axes)
      return [{ elemType, shape: c.node.attrInt('keepdims', 1) ? x.map(() => null) : undefined }];
    const keep = c.node.attrInt('keepdims', 1) === 1;
    if ((!axes || axes.length === 0) && c.node.attrInt('noop_with_empty_axes', 0) === 1)
      return [{ elemType, shape: x }];
    const set = new Set(
      (axes && axes.length ? axes : x.map((_, i) => i)).map((a) => normalizeAxis(a, x.length)),
    );
    return [
      { elemType, shape: keep ? x.map((d, i) => (set.has(i) ? 1 : d)) : x.filter((_, i) => !set.has(i)) },
    ];
  };
}

const argReduce: ShapeRule = (c) => {
  const x = c.shape(0);
  if (!x) return [{ elemType: DataType.INT64 }];
  const axis = normalizeAxis(c.node.attrInt('axis', 0), x.length);
  const keep = c.node.attrInt('keepdims', 1) === 1;
  return [
    {
      elemType: DataType.INT64,
      shape: keep ? x.map((d, i) => (i === axis ? 1 : d)) : x.filter((_, i) => i !== axis),
    },
  ];
};

const flatten: ShapeRule = (c) => {
  const x = c.shape(0);
  const elemType = c.elemType(0);
  if (!x) return [{ elemType }];
  const axis = c.node.attrInt('axis', 1);
  const a = axis < 0 ? axis + x.length : axis;
  if (a < 0 || a > x.length) throw new ShapeError(`Flatten axis ${axis} for rank ${x.length}`);
  return [{ elemType, shape: [productDim(product(x.slice(0, a))), productDim(product(x.slice(a)))] }];
};

const reshape: ShapeRule = (c) => {
  const x = c.shape(0);
  const elemType = c.elemType(0);
  const target = c.values(1);
  const out: OutputInfo = { elemType };
  if (!target) {
    const s = c.shape(1);
    if (s && typeof s[0] === 'number') out.shape = new Array<Dim>(s[0]).fill(null);
    return [out];
  }
  const allowzero = c.node.attrInt('allowzero', 0) === 1;
  let minus = -1;
  const dims = target.map((d, i): Dim => {
    if (d === 0 && !allowzero) return x ? (x[i] ?? null) : null;
    if (d === -1) {
      minus = i;
      return null;
    }
    return d;
  });
  if (minus >= 0 && x) {
    const rest = dims.filter((_, i) => i !== minus);
    const q = divide(product(x), product(rest));
    dims[minus] = q ? productDim(q) : null;
  }
  out.shape = dims;
  if (dims.length <= 1) out.values = c.values(0);
  return [out];
};

const transpose: ShapeRule = (c) => {
  const x = c.shape(0);
  if (!x) return [{ elemType: c.elemType(0) }];
  const perm = c.node.attrInts('perm') ?? x.map((_, i) => x.length - 1 - i);
  return [{ elemType: c.elemType(0), shape: perm.map((p) => x[normalizeAxis(p, x.length)]!) }];
};

const unsqueeze: ShapeRule = (c) => {
  const x = c.shape(0);
  const axes = attrOrInput(c, 'axes', 1, c.opset >= 13);
  const elemType = c.elemType(0);
  if (!x || !axes) return [{ elemType }];
  return [{ elemType, shape: unsqueezeDims<Dim>(x, axes, 1), values: c.values(0) }];
};

const squeeze: ShapeRule = (c) => {
  const x = c.shape(0);
  const axes = attrOrInput(c, 'axes', 1, c.opset >= 13);
  const elemType = c.elemType(0);
  if (!x || (c.opset >= 13 && c.has(1) && !axes)) return [{ elemType }];
  let drop: Set<number>;
  if (axes) drop = new Set(axes.map((a) => normalizeAxis(a, x.length)));
  else {
    if (x.some((d) => typeof d !== 'number')) return [{ elemType }];
    drop = new Set(x.flatMap((d, i) => (d === 1 ? [i] : [])));
  }
  for (const a of drop)
    if (typeof x[a] === 'number' && x[a] !== 1) throw new ShapeError(`Squeeze of axis ${a} of size ${x[a]}`);
  return [{ elemType, shape: x.filter((_, i) => !drop.has(i)), values: c.values(0) }];
};

const concat: ShapeRule = (c) => {
  const shapes = c.node.inputs.map((_, i) => c.shape(i));
  const elemType = c.elemType(0);
  const known = shapes.find((s) => s !== undefined);
  if (!known) return [{ elemType }];
  const axis = normalizeAxis(c.node.attrInt('axis', 0), known.length);
  const shape = known.map((_, i): Dim => {
    if (i === axis) {
      if (shapes.some((s) => !s)) return null;
      const p = shapes.reduce<Dim>((sum, s) => dimArith('Add', sum, s![i]!), 0);
      return p;
    }
    const numeric = shapes.find((s) => s && typeof s[i] === 'number');
    return numeric ? numeric[i]! : known[i]!;
  });
  const out: OutputInfo = { elemType, shape };
  if (known.length === 1) {
    const vals = c.node.inputs.map((_, i) => c.values(i));
    if (vals.every((v) => v !== undefined)) out.values = vals.flat() as Dim[];
  }
  return [out];
};

const split: ShapeRule = (c) => {
  const x = c.shape(0);
  const n = c.node.outputs.length;
  const elemType = c.elemType(0);
  if (!x) return new Array(n).fill({ elemType });
  const axis = normalizeAxis(c.node.attrInt('axis', 0), x.length);
  let sizes: Dim[] | undefined = attrOrInput(c, 'split', 1, c.opset >= 13);
  if (!sizes) {
    const d = x[axis]!;
    if (typeof d !== 'number') sizes = new Array<Dim>(n).fill(null);
    else if (c.opset >= 18 && c.node.attrInt('num_outputs') !== undefined) {
      const chunk = Math.ceil(d / n);
      sizes = Array.from({ length: n }, (_, i) => Math.max(0, Math.min(chunk, d - i * chunk)));
    } else {
      if (d % n !== 0) throw new ShapeError(`Split of ${d} into ${n} equal parts`);
      sizes = new Array<Dim>(n).fill(d / n);
    }
  }
  return sizes.map((s) => ({ elemType, shape: x.map((d, i) => (i === axis ? s : d)) }));
};

const slice: ShapeRule = (c) => {
  const x = c.shape(0);
  const elemType = c.elemType(0);
  if (!x) return [{ elemType }];
  const fromInputs = c.opset >= 10;
  const starts = fromInputs ? ints(c, 1) : c.node.attrInts('starts');
  const ends = fromInputs ? ints(c, 2) : c.node.attrInts('ends');
  const axes = fromInputs ? (c.has(3) ? ints(c, 3) : undefined) : c.node.attrInts('axes');
  const steps = fromInputs && c.has(4) ? ints(c, 4) : undefined;
  if (!starts || !ends || (fromInputs && c.has(3) && !axes) || (c.has(4) && !steps)) {
    if (!axes) return [{ elemType, shape: x.map(() => null) }];
    const touched = new Set(axes.map((a) => normalizeAxis(a, x.length)));
    return [{ elemType, shape: x.map((d, i) => (touched.has(i) ? null : d)) }];
  }
  const shape = x.map((d): Dim => d);
  starts.forEach((s, k) => {
    const axis = normalizeAxis(axes ? axes[k]! : k, x.length);
    const d = x[axis]!;
    const step = steps ? steps[k]! : 1;
    const e = ends[k]!;
    if (typeof d === 'number') {
      shape[axis] = sliceRanges([d], [s], [e], [0], [step])[0]!.count;
    } else shape[axis] = s === 0 && step === 1 && e >= 2 ** 31 - 1 ? d : null; // whole symbolic axis kept
  });
  const out: OutputInfo = { elemType, shape };
  const vals = c.values(0);
  if (vals && x.length === 1) {
    const r = sliceRanges([vals.length], starts, ends, axes, steps)[0]!;
    out.values = Array.from({ length: r.count }, (_, i) => vals[r.start + i * r.step]!);
  }
  return [out];
};

const pad: ShapeRule = (c) => {
  const x = c.shape(0);
  const elemType = c.elemType(0);
  if (!x) return [{ elemType }];
  const pads = c.opset >= 11 ? ints(c, 1) : c.node.attrInts('pads');
  if (!pads) return [{ elemType, shape: x.map(() => null) }];
  const axes = c.opset >= 18 && c.has(3) ? ints(c, 3) : x.map((_, i) => i);
  if (!axes) return [{ elemType, shape: x.map(() => null) }];
  const shape = [...x];
  axes.forEach((a, k) => {
    const axis = normalizeAxis(a, x.length);
    shape[axis] = dimArith('Add', dimArith('Add', x[axis]!, pads[k]!), pads[k + axes.length]!);
  });
  return [{ elemType, shape }];
};

const gemm: ShapeRule = (c) => {
  const a = c.shape(0);
  const b = c.shape(1);
  const elemType = c.elemType(0);
  if (!a || !b) return [{ elemType }];
  const m = c.node.attrInt('transA', 0) ? a[1]! : a[0]!;
  const n = c.node.attrInt('transB', 0) ? b[0]! : b[1]!;
  return [{ elemType, shape: [m, n] }];
};

const matmul: ShapeRule = (c) => {
  const a = c.shape(0);
  const b = c.shape(1);
  const elemType = c.elemType(0);
  if (!a || !b) return [{ elemType }];
  const a2 = a.length === 1 ? [1, a[0]!] : a;
  const b2 = b.length === 1 ? [b[0]!, 1] : b;
  const batch = broadcast([a2.slice(0, -2), b2.slice(0, -2)]);
  const shape: Dim[] = [...batch];
  if (a.length !== 1) shape.push(a2[a2.length - 2]!);
  if (b.length !== 1) shape.push(b2[b2.length - 1]!);
  return [{ elemType, shape }];
};

const gather: ShapeRule = (c) => {
  const x = c.shape(0);
  const ind = c.shape(1);
  const elemType = c.elemType(0);
  if (!x || !ind) return [{ elemType }];
  const axis = normalizeAxis(c.node.attrInt('axis', 0), x.length);
  const out: OutputInfo = { elemType, shape: [...x.slice(0, axis), ...ind, ...x.slice(axis + 1)] };
  const vals = c.values(0);
  const idx = ints(c, 1);
  if (vals && idx && x.length === 1 && ind.length <= 1)
    out.values = idx.map((i) => {
      const k = i < 0 ? i + vals.length : i;
      if (k < 0 || k >= vals.length) throw new ShapeError(`Gather index ${i} out of range`);
      return vals[k]!;
    });
  return [out];
};

const shapeOp: ShapeRule = (c) => {
  const x = c.shape(0);
  if (!x) return [{ elemType: DataType.INT64 }];
  const rank = x.length;
  const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + rank : v, 0), rank);
  const start = clamp(c.node.attrInt('start', 0));
  const end = clamp(c.node.attrInt('end', rank));
  const values = x.slice(start, Math.max(start, end));
  return [{ elemType: DataType.INT64, shape: [values.length], values }];
};

const constantOfShape: ShapeRule = (c) => {
  const v = c.node.attr('value');
  const elemType = v?.value instanceof Tensor ? v.value.dataType : DataType.FLOAT;
  const dims = c.values(0);
  if (dims) return [{ elemType, shape: dims }];
  const s = c.shape(0);
  return [{ elemType, shape: s && typeof s[0] === 'number' ? new Array<Dim>(s[0]).fill(null) : undefined }];
};

/** Type and shape of a Constant from whichever value_* attribute it carries (the evaluator covers numbers). */
const constant: ShapeRule = (c) => {
  const [name, a] = [...c.node.attributes][0] ?? [];
  if (a && a.value instanceof Tensor) return [{ elemType: a.value.dataType, shape: [...a.value.dims] }];
  const list = Array.isArray(a?.value) ? [a.value.length] : [];
  const elemType = (
    {
      value_float: DataType.FLOAT,
      value_floats: DataType.FLOAT,
      value_int: DataType.INT64,
      value_ints: DataType.INT64,
      value_string: DataType.STRING,
      value_strings: DataType.STRING,
    } as Record<string, DataType>
  )[name ?? ''];
  return [elemType === undefined ? {} : { elemType, shape: list }];
};

const cast: ShapeRule = (c) => {
  const to = c.node.attrInt('to') as DataType | undefined;
  const integral = to === DataType.INT64 || to === DataType.INT32;
  const from = c.elemType(0);
  const fromIntegral = from === DataType.INT64 || from === DataType.INT32;
  return [{ elemType: to, shape: c.shape(0), values: integral && fromIntegral ? c.values(0) : undefined }];
};

const expand: ShapeRule = (c) => {
  const x = c.shape(0);
  const target = c.values(1);
  const elemType = c.elemType(0);
  if (!x || !target) return [{ elemType }];
  return [{ elemType, shape: broadcast([x, target]) }];
};

const tile: ShapeRule = (c) => {
  const x = c.shape(0);
  const reps = c.values(1);
  if (!x || !reps) return [{ elemType: c.elemType(0) }];
  return [{ elemType: c.elemType(0), shape: x.map((d, i) => dimArith('Mul', d, reps[i]!)) }];
};

const range: ShapeRule = (c) => {
  const [s, l, d] = [0, 1, 2].map((i) => ints(c, i)?.[0]);
  const elemType = c.elemType(0);
  if (s === undefined || l === undefined || d === undefined || d === 0) return [{ elemType, shape: [null] }];
  return [{ elemType, shape: [Math.max(0, Math.ceil((l - s) / d))] }];
};

const dropout: ShapeRule = (c) => [
  { elemType: c.elemType(0), shape: c.shape(0) },
  { elemType: DataType.BOOL, shape: c.shape(0) },
];

const batchNorm: ShapeRule = (c) => {
  const x = c.shape(0);
  const channel: Dim[] | undefined = x ? [x[1]!] : undefined;
  return [
    { elemType: c.elemType(0), shape: x },
    ...c.node.outputs.slice(1).map(() => ({ elemType: c.elemType(1), shape: channel })),
  ];
};

const size: ShapeRule = (c) => {
  const p = productDim(product(c.shape(0) ?? [null]));
  return [{ elemType: DataType.INT64, shape: [], values: [p] }];
};

const topK: ShapeRule = (c) => {
  const x = c.shape(0);
  const k = c.opset >= 10 ? ints(c, 1)?.[0] : c.node.attrInt('k');
  if (!x) return [{ elemType: c.elemType(0) }, { elemType: DataType.INT64 }];
  const axis = normalizeAxis(c.node.attrInt('axis', -1), x.length);
  const shape = x.map((d, i) => (i === axis ? (k ?? null) : d));
  return [
    { elemType: c.elemType(0), shape },
    { elemType: DataType.INT64, shape },
  ];
};

/**
 * Resize (opset 10: X, scales; 11+: X, roi, scales, sizes; 18 adds `axes`) and Upsample (scales as an input
 * from opset 9, an attribute before): sizes when given, else floor(dim * scale), as onnxruntime computes.
 */
const resize: ShapeRule = (c) => {
  const x = c.shape(0);
  const elemType = c.elemType(0);
  if (!x) return [{ elemType }];
  const upsample = c.node.opType === 'Upsample';
  const axes = c.node.attrInts('axes')?.map((a) => normalizeAxis(a, x.length)) ?? x.map((_, i) => i);
  const sizesAt = !upsample && c.opset >= 11 && c.has(3) ? 3 : undefined;
  if (sizesAt !== undefined) {
    const sizes = c.values(sizesAt);
    if (!sizes || sizes.length !== axes.length) return [{ elemType }];
    const shape = [...x];
    axes.forEach((a, k) => (shape[a] = sizes[k]!));
    return [{ elemType, shape }];
  }
  const scalesAt = upsample ? (c.opset >= 9 ? 1 : undefined) : c.opset >= 11 ? 2 : 1;
  const scales =
    scalesAt === undefined
      ? c.node.attrFloats('scales')
      : c.has(scalesAt)
        ? c.constant(scalesAt)?.toNumbers()
        : undefined;
  if (!scales || scales.length !== axes.length) return [{ elemType }];
  const shape = [...x];
  axes.forEach((a, k) => {
    const d = x[a]!;
    shape[a] = scales[k] === 1 ? d : typeof d === 'number' ? Math.floor(d * scales[k]!) : null;
  });
  return [{ elemType, shape }];
};

/** DepthToSpace: [N, C, H, W] -> [N, C/b², H·b, W·b]; SpaceToDepth the reverse. */
const depthToSpace: ShapeRule = (c) => {
  const x = c.shape(0);
  const elemType = c.elemType(0);
  const b = c.node.attrInt('blocksize', 1);
  if (!x || x.length !== 4) return [{ elemType }];
  const scale = (d: Dim, f: number): Dim => (typeof d === 'number' ? d * f : f === 1 ? d : null);
  const [n, ch, h, w] = x;
  const shape =
    c.node.opType === 'DepthToSpace'
      ? [n!, scale(ch!, 1 / (b * b)), scale(h!, b), scale(w!, b)]
      : [n!, scale(ch!, b * b), scale(h!, 1 / b), scale(w!, 1 / b)];
  if (shape.some((d) => typeof d === 'number' && !Number.isInteger(d)))
    throw new ShapeError(`${c.node.opType} block size ${b} does not divide ${JSON.stringify(x)}`);
  return [{ elemType, shape }];
};

const UNARY = [
  'Relu',
  'Clip',
  'LeakyRelu',
  'Sigmoid',
  'HardSigmoid',
  'HardSwish',
  'Softmax',
  'LogSoftmax',
  'Tanh',
  'Elu',
  'Selu',
  'Softplus',
  'Softsign',
  'Gelu',
  'Mish',
  'Neg',
  'Sqrt',
  'Exp',
  'Log',
  'Floor',
  'Ceil',
  'Abs',
  'Sign',
  'Reciprocal',
  'Round',
  'Erf',
  'Sin',
  'Cos',
  'LRN',
  'InstanceNormalization',
  'LayerNormalization',
  'LpNormalization',
  'Hardmax',
  'Celu',
  'ThresholdedRelu',
  'Shrink',
  'CumSum',
  'IsNaN',
  'IsInf',
];
const BINARY = ['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mean', 'Mod', 'PRelu', 'BitShift'];
const COMPARE = ['Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual', 'And', 'Or', 'Xor'];

export const SHAPE_RULES: Record<string, ShapeRule> = {
  ...Object.fromEntries(UNARY.map((op) => [op, same])),
  ...Object.fromEntries(BINARY.map((op) => [op, elementwise()])),
  ...Object.fromEntries(COMPARE.map((op) => [op, elementwise(DataType.BOOL)])),
  IsNaN: (c) => [{ elemType: DataType.BOOL, shape: c.shape(0) }],
  IsInf: (c) => [{ elemType: DataType.BOOL, shape: c.shape(0) }],
  Not: (c) => [{ elemType: DataType.BOOL, shape: c.shape(0) }],
  Where: elementwise(),
  Identity: passValues,
  Conv: conv,
  ConvTranspose: convTranspose,
  BatchNormalization: batchNorm,
  MaxPool: pool,
  AveragePool: pool,
  LpPool: pool,
  GlobalAveragePool: globalPool,
  GlobalMaxPool: globalPool,
  GlobalLpPool: globalPool,
  ReduceMean: reduceRule(18),
  ReduceSum: reduceRule(13),
  ReduceMax: reduceRule(18),
  ReduceMin: reduceRule(18),
  ReduceProd: reduceRule(18),
  ReduceL1: reduceRule(18),
  ReduceL2: reduceRule(18),
  ReduceLogSumExp: reduceRule(18),
  ReduceSumSquare: reduceRule(18),
  ArgMax: argReduce,
  ArgMin: argReduce,
  Flatten: flatten,
  Reshape: reshape,
  Transpose: transpose,
  Squeeze: squeeze,
  Unsqueeze: unsqueeze,
  Concat: concat,
  Split: split,
  Slice: slice,
  Pad: pad,
  Gemm: gemm,
  MatMul: matmul,
  Gather: gather,
  Shape: shapeOp,
  Size: size,
  ConstantOfShape: constantOfShape,
  Constant: constant,
  Cast: cast,
  Expand: expand,
  Tile: tile,
  Range: range,
  Dropout: dropout,
  TopK: topK,
  Resize: resize,
  Upsample: resize,
  DepthToSpace: depthToSpace,
  SpaceToDepth: depthToSpace,
};
