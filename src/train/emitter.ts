import { floatAttr, intAttr, intsAttr, type Attribute } from '../ir/attribute.js';
import { DataType } from '../ir/data-type.js';
import { Graph, Node, Value } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { tensorType } from '../ir/types.js';

export type AttrValue = number | number[] | { float: number } | Attribute;

export interface EmitterOptions {
  /** The opset the emitted nodes must be valid in (default 13): ReduceMean takes its axes as an input from 18. */
  opset?: number;
  /** Insert before this node instead of appending, so that a rewrite in the middle stays topologically sorted. */
  before?: Node;
}

/** Adds nodes and constants to a graph with fresh names; the graph builders' only way to emit IR. */
export class Emitter {
  private readonly intConsts = new Map<string, Value>();
  private readonly floatConsts = new Map<number, Value>();
  readonly opset: number;

  constructor(
    readonly graph: Graph,
    private readonly prefix: string,
    private readonly options: EmitterOptions = {},
  ) {
    this.opset = options.opset ?? 13;
  }

  /** Emits one node with one output; ints and int lists become INT/INTS attributes, `{ float }` a FLOAT. */
  op(
    opType: string,
    inputs: (Value | undefined)[],
    attrs: Record<string, AttrValue> = {},
    hint = opType,
  ): Value {
    return this.opN(opType, inputs, 1, attrs, hint)[0]!;
  }

  opN(
    opType: string,
    inputs: (Value | undefined)[],
    outputs: number,
    attrs: Record<string, AttrValue> = {},
    hint = opType,
  ): Value[] {
    const outs = Array.from(
      { length: outputs },
      () => new Value(this.graph.uniqueName(`${this.prefix}${hint}`)),
    );
    const node = new Node(opType, inputs, outs, this.graph.uniqueName(`${this.prefix}${hint}`));
    for (const [k, v] of Object.entries(attrs)) node.attributes.set(k, toAttribute(v));
    this.graph.addNode(node, this.options.before);
    return outs;
  }

  /** A shared int64 1-D initializer (shapes, axes, slice bounds). */
  ints(values: readonly number[]): Value {
    const key = values.join(',');
    let v = this.intConsts.get(key);
    if (!v) {
      v = new Value(
        this.graph.uniqueName(`${this.prefix}const_i64`),
        tensorType(DataType.INT64, [values.length]),
      );
      this.graph.addInitializer(v, Tensor.int64(values));
      this.intConsts.set(key, v);
    }
    return v;
  }

  /** A shared float32 scalar initializer. */
  scalar(x: number): Value {
    const key = Math.fround(x);
    let v = this.floatConsts.get(key);
    if (!v) {
      v = new Value(this.graph.uniqueName(`${this.prefix}const_f32`), tensorType(DataType.FLOAT, []));
      this.graph.addInitializer(v, Tensor.scalarFloat(x));
      this.floatConsts.set(key, v);
    }
    return v;
  }

  floats(values: Float32Array, dims: number[], hint = 'const'): Value {
    const v = new Value(this.graph.uniqueName(`${this.prefix}${hint}`), tensorType(DataType.FLOAT, dims));
    this.graph.addInitializer(v, Tensor.fromArray(DataType.FLOAT, dims, values));
    return v;
  }

  add(a: Value, b: Value): Value {
    return this.op('Add', [a, b]);
  }
  sub(a: Value, b: Value): Value {
    return this.op('Sub', [a, b]);
  }
  mul(a: Value, b: Value): Value {
    return this.op('Mul', [a, b]);
  }
  scale(a: Value, k: number): Value {
    return k === 1 ? a : this.op('Mul', [a, this.scalar(k)]);
  }
  reshape(a: Value, shape: readonly number[]): Value {
    return this.op('Reshape', [a, this.ints(shape)]);
  }
  transpose(a: Value, perm: number[]): Value {
    return this.op('Transpose', [a], { perm });
  }
  reduceMean(a: Value, axes: number[], keepdims: boolean): Value {
    return this.reduce('ReduceMean', a, axes, keepdims);
  }
  reduceSum(a: Value, axes: number[], keepdims: boolean): Value {
    return this.reduce('ReduceSum', a, axes, keepdims);
  }

  /**
   * Axes that include the batch axis but are not one contiguous run (a per-channel [0, 2, 3] of NCHW) are
   * reduced in two nodes: the later axes first, then axis 0. onnxruntime takes a slow path for such a set:
   * ReduceSum over [0, 2, 3] of [128,16,32,32] took 1.6 ms against 0.44 for the two nodes (median of 30, one
   * thread; [128,64,8,8]: 0.65 against 0.19), ReduceMean 0.57 against 0.30. Equal counts per slice keep the mean
   * of means the mean.
   */
  private reduce(kind: 'ReduceSum' | 'ReduceMean', a: Value, axes: number[], keepdims: boolean): Value {
    const sorted = [...axes].sort((x, y) => x - y);
    const contiguous = sorted.every((v, i) => i === 0 || v === sorted[i - 1]! + 1);
    if (sorted[0] === 0 && !contiguous) {
      const inner = this.reduceNode(kind, a, sorted.slice(1), keepdims);
      return this.reduceNode(kind, inner, [0], keepdims);
    }
    return this.reduceNode(kind, a, axes, keepdims);
  }

  private reduceNode(kind: 'ReduceSum' | 'ReduceMean', a: Value, axes: number[], keepdims: boolean): Value {
    const k = keepdims ? 1 : 0;
    return kind === 'ReduceSum' || this.opset >= 18
      ? this.op(kind, [a, this.ints(axes)], { keepdims: k })
      : this.op(kind, [a], { axes, keepdims: k });
  }
  slice(a: Value, starts: number[], ends: number[], axes: number[], steps?: number[]): Value {
    const inputs = [a, this.ints(starts), this.ints(ends), this.ints(axes)];
    if (steps) inputs.push(this.ints(steps));
    return this.op('Slice', inputs);
  }
  /** Sums contributions; one contribution is returned as is. */
  sum(values: Value[]): Value {
    return values.length === 1 ? values[0]! : this.op('Sum', values);
  }
}

function toAttribute(v: AttrValue): Attribute {
  if (typeof v === 'number') return intAttr(v);
  if (Array.isArray(v)) return intsAttr(v);
  if ('float' in v) return floatAttr(v.float);
  return v;
}
