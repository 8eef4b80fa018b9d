import * as ort from 'onnxruntime-node';
import { UserError } from '../errors.js';
import { DataType, constantOf, ortTypeName, serializeModel, type Model, type Value } from '../ir/index.js';
import { dataTypeName } from '../ir/data-type.js';
import { analyzeShapes } from '../passes/infer-shapes.js';

/**
 * What the compiler needs to know about every value at concrete input dims: its dims, its element type, and
 * the data of small integer tensors (shape arithmetic such as the option-A shortcut's pads). Pruning probes at
 * batch 1, the training step at its batch size; both through `probeShapes`.
 */
export interface ProbeResult {
  dims: Map<Value, number[]>;
  /** Element types (DataType) where known. */
  types: Map<Value, DataType>;
  ints: Map<Value, number[]>;
}

/**
 * Every value's concrete dims, type and the values of shape arithmetic: from the static shape analysis, or, for
 * a model with a computed value the analysis cannot evaluate, from one onnxruntime run (with a warning).
 */
export async function probeShapes(
  model: Model,
  inputDims: Map<string, number[]>,
  warn?: (message: string) => void,
): Promise<ProbeResult> {
  const { probe, missing, unknown } = staticProbe(model, inputDims);
  if (!missing) return probe;
  warn?.(
    `static shape analysis cannot determine the ${missing}; probing the model in onnxruntime instead (slower)`,
  );
  const found = await probeModel(model, inputDims, unknown);
  for (const [v, d] of found.dims) probe.dims.set(v, d);
  for (const [v, t] of found.types) probe.types.set(v, t);
  for (const [v, i] of found.ints) probe.ints.set(v, i);
  return probe;
}

/** Concrete input dims for a run: symbolic dims become 1 (the batch); anything else must be known. */
export function probeInputDims(
  model: Model,
  overrides: Record<string, number[]> = {},
): Map<string, number[]> {
  const dims = new Map<string, number[]>();
  for (const v of model.graph.inputs) {
    if (v.isInitializer) continue;
    const given = overrides[v.name];
    if (given) {
      dims.set(v.name, given);
      continue;
    }
    const shape = v.shape;
    if (!shape)
      throw new UserError(
        `graph input '${v.name}' has no shape: give it with --input-shape`,
        model.sourcePath,
      );
    dims.set(
      v.name,
      shape.map((d, i) => (typeof d === 'number' ? d : i === 0 ? 1 : NaN)),
    );
    if (dims.get(v.name)!.some(Number.isNaN))
      throw new UserError(
        `graph input '${v.name}' has open dims beyond the batch (${shape.map((d) => d ?? '?').join('x')}): give its shape with --input-shape, e.g. 1x${shape
          .slice(1)
          .map((d) => (typeof d === 'number' ? d : 640))
          .join('x')}`,
        model.sourcePath,
      );
  }
  return dims;
}

/**
 * Deterministic pseudo-random inputs: floats in [-1, 1); integer ids below the vocabulary size of the
 * embedding (Gather) they index, else in [0, 100); booleans false (a mask that hides nothing).
 */
export function randomInputs(
  model: Model,
  dims: Map<string, number[]>,
  seed = 1,
): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  let s = seed >>> 0 || 1;
  const next = (): number => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
  for (const v of model.graph.inputs) {
    const d = dims.get(v.name);
    if (!d) continue;
    const n = d.reduce((a, b) => a * b, 1);
    if (!(n <= MAX_RANDOM_INPUT_ELEMENTS))
      throw new UserError(
        `graph input '${v.name}' at ${d.join('x')} is ${n} values, over the ${MAX_RANDOM_INPUT_ELEMENTS} a check run feeds`,
        model.sourcePath,
      );
    const type = v.elemType ?? DataType.FLOAT;
    const feed = inputTensor(type, n, d, next, () => idBound(v));
    if (!feed)
      throw new UserError(
        `graph input '${v.name}' is of type ${dataTypeName(type)}; only float, integer and bool inputs are supported`,
        model.sourcePath,
      );
    feeds[v.name] = feed;
  }
  return feeds;
}

/** Most values one random input may hold (a typed array past this is refused by V8 or exhausts memory). */
const MAX_RANDOM_INPUT_ELEMENTS = 2 ** 30;

function inputTensor(
  type: DataType,
  n: number,
  d: number[],
  next: () => number,
  bound: () => number,
): ort.Tensor | undefined {
  switch (type) {
    case DataType.FLOAT:
      return new ort.Tensor(
        'float32',
        Float32Array.from({ length: n }, () => next() * 2 - 1),
        d,
      );
    case DataType.DOUBLE:
      return new ort.Tensor(
        'float64',
        Float64Array.from({ length: n }, () => next() * 2 - 1),
        d,
      );
    case DataType.INT64: {
      const b = bound();
      return new ort.Tensor(
        'int64',
        BigInt64Array.from({ length: n }, () => BigInt(Math.floor(next() * b))),
        d,
      );
    }
    case DataType.INT32: {
      const b = bound();
      return new ort.Tensor(
        'int32',
        Int32Array.from({ length: n }, () => Math.floor(next() * b)),
        d,
      );
    }
    case DataType.BOOL:
      return new ort.Tensor('bool', new Uint8Array(n), d);
    default:
      return undefined;
  }
}

/** Each integer input's id bound (idBound), by name: what a benchmark of the serialised model feeds. */
export function idBounds(model: Model): Record<string, number> {
  const bounds: Record<string, number> = {};
  for (const v of model.graph.inputs)
    if (v.elemType === DataType.INT64 || v.elemType === DataType.INT32) bounds[v.name] = idBound(v);
  return bounds;
}

/** Ids index an embedding: the row count of the constant table a Gather reads them into, else 100. */
function idBound(v: Value): number {
  for (const u of v.uses) {
    if (u.node.opType !== 'Gather' || u.index !== 1) continue;
    const table = constantOf(u.node.inputs[0]);
    const axis = u.node.attrInt('axis', 0);
    const rows = table?.dims[axis < 0 ? axis + table.dims.length : axis];
    if (rows) return rows;
  }
  return 100;
}

/** Inputs whose values are shape arithmetic the channel analysis reads (index into node.inputs). */
const INT_INPUTS: Record<string, number[]> = {
  Pad: [1],
  Slice: [1, 2, 3, 4],
  Reshape: [1],
  Squeeze: [1],
  Unsqueeze: [1],
  Split: [1],
  ReduceMean: [1],
  ReduceSum: [1],
  ReduceMax: [1],
  ReduceMin: [1],
  ReduceL1: [1],
  ReduceL2: [1],
  ReduceProd: [1],
  ReduceLogSumExp: [1],
  ReduceSumSquare: [1],
};

/**
 * The probe's facts without running anything: the static shape analysis (src/passes) at the given input
 * dims. Returns `missing` (the first value it could not pin down) when some used value has no concrete
 * shape or some shape-arithmetic input of Pad/Slice/Reshape/... is not known; the caller then falls back to
 * the onnxruntime probe.
 */
export function staticProbe(
  model: Model,
  inputDims?: Map<string, number[]>,
): { probe: ProbeResult; missing?: string; unknown: Value[] } {
  const g = model.graph;
  const dimsIn = inputDims ?? probeInputDims(model);
  const shapes = analyzeShapes(model, { inputShapes: Object.fromEntries(dimsIn) });
  const dims = new Map<Value, number[]>();
  const types = new Map<Value, DataType>();
  const ints = new Map<Value, number[]>();
  let missing: string | undefined;
  const unknown = new Set<Value>();
  const concrete = (v: Value): number[] | undefined => {
    const s = shapes.info.get(v)?.shape;
    return s && s.every((d): d is number => typeof d === 'number') ? (s as number[]) : undefined;
  };
  for (const [v, vals] of shapes.values)
    if (vals.every((d): d is number => typeof d === 'number')) ints.set(v, vals as number[]);
  for (const v of g.inputs) {
    const d = dimsIn.get(v.name);
    if (d) dims.set(v, d);
  }
  for (const v of g.initializers) dims.set(v, [...v.initializer!.dims]);
  const outputs = new Set(g.outputs);
  for (const n of g.nodes) {
    // A Gather's indices matter only where it picks dims out of a Shape.
    const intInputs =
      n.opType === 'Gather' && n.inputs[0]?.producer?.opType === 'Shape' ? [1] : (INT_INPUTS[n.opType] ?? []);
    for (const i of intInputs) {
      const v = n.inputs[i];
      if (!v || ints.has(v) || !v.producer) continue;
      unknown.add(v);
      missing ??= `value of '${v.name}' (input ${i} of ${n.opType} '${n.name}')`;
    }
    for (const o of n.outputs) {
      if (o.name === '') continue;
      const t = shapes.info.get(o)?.elemType;
      if (t !== undefined) types.set(o, t);
      const d = concrete(o);
      if (d) dims.set(o, d);
      else if (o.uses.length > 0 || outputs.has(o)) {
        unknown.add(o);
        missing ??= `shape of '${o.name}' (${n.opType} '${n.name}')`;
      }
    }
  }
  for (const v of [...g.inputs, ...g.initializers]) {
    const t = v.initializer?.dataType ?? v.elemType;
    if (t !== undefined) types.set(v, t);
  }
  return { probe: { dims, types, ints }, unknown: [...unknown], ...(missing ? { missing } : {}) };
}

/** How many exposed values one onnxruntime run returns: bounds the probe's memory to that many activations. */
const FETCH_BATCH = 32;

/**
 * Runs the model (batch 1) with the values asked for (default: every node output) exposed, to learn their
 * concrete dims and the values of shape arithmetic. The fallback when `staticProbe` cannot evaluate some
 * computed value: it works on raw exports whatever subgraph computes a Pad's amounts. Values are fetched a
 * few at a time and dropped once read, so memory holds a bounded number of activations, not all of them.
 */
export async function probeModel(
  model: Model,
  inputDims?: Map<string, number[]>,
  only?: readonly Value[],
): Promise<ProbeResult> {
  const g = model.graph;
  const dimsIn = inputDims ?? probeInputDims(model);
  const wanted = new Set((only ?? g.nodes.flatMap((n) => n.outputs)).map((v) => v.name).filter(Boolean));
  // The values exposed on a copy: the caller's graph outputs never change, not even for a moment.
  const copy = model.clone();
  const exposed = new Set(copy.graph.outputs);
  for (const n of copy.graph.nodes)
    for (const o of n.outputs)
      if (wanted.has(o.name) && !exposed.has(o)) {
        exposed.add(o);
        copy.graph.outputs.push(o);
      }
  const session = await ort.InferenceSession.create(serializeModel(copy), {
    graphOptimizationLevel: 'disabled',
  });
  const result: ProbeResult = { dims: new Map(), types: new Map(), ints: new Map() };
  try {
    const feeds = randomInputs(model, dimsIn);
    const names = session.outputNames.filter((name) => wanted.has(name));
    const byName = g.valueByName();
    for (let k = 0; k < names.length; k += FETCH_BATCH)
      readProbeOutputs(byName, await session.run(feeds, names.slice(k, k + FETCH_BATCH)), result);
  } finally {
    await session.release();
  }
  for (const v of g.inputs) {
    const d = dimsIn.get(v.name);
    if (d) result.dims.set(v, d);
  }
  for (const v of g.initializers) result.dims.set(v, [...v.initializer!.dims]);
  for (const v of [...g.inputs, ...g.initializers]) {
    const t = v.initializer?.dataType ?? v.elemType;
    if (t !== undefined) result.types.set(v, t);
  }
  return result;
}

function readProbeOutputs(
  byName: Map<string, Value>,
  out: Record<string, ort.Tensor>,
  { dims, types, ints }: ProbeResult,
): void {
  for (const [name, t] of Object.entries(out)) {
    const v = byName.get(name);
    if (!v) continue;
    dims.set(v, t.dims.map(Number));
    const type = dataTypeOfOrt(t.type);
    if (type !== undefined) types.set(v, type);
    if ((t.type === 'int64' || t.type === 'int32') && t.size <= 64)
      ints.set(v, Array.from(t.data as ArrayLike<number | bigint>, Number));
    t.dispose();
  }
}

const ORT_TYPES = new Map<string, DataType>(
  (Object.values(DataType).filter((v) => typeof v === 'number') as DataType[]).flatMap((t) => {
    try {
      return [[ortTypeName(t), t] as const];
    } catch {
      return [];
    }
  }),
);

export function dataTypeOfOrt(name: string): DataType | undefined {
  return ORT_TYPES.get(name);
}
