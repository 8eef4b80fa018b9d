import { UserError } from '../errors.js';
import { AttributeType } from '../ir/attribute.js';
import type { Node, Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { shapeToString, type Dim } from '../ir/types.js';
import { analyzeShapes } from '../passes/infer-shapes.js';

/**
 * The cost model (docs/cost-model.md): multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul for ONE
 * image, and parameter counts (weights and biases of those ops, BatchNormalization gamma/beta). Everything
 * else (BN, activations, pooling, elementwise ops, bias additions) costs 0 MACs.
 */

export interface LayerCost {
  /** The node's name (its first output's name when the node has none). */
  name: string;
  opType: string;
  /** Output channels (Conv/ConvTranspose/BN) or output features (Gemm/MatMul); undefined when unknown. */
  outChannels: number | undefined;
  macs: number;
  /** Trainable elements this node owns: weight + bias, or BN gamma + beta. */
  params: number;
  /** Non-trainable state: BN running mean + running variance. */
  buffers: number;
  /** The weight initializer's name (Identity chains followed); undefined when the weight is not a constant. */
  weight: string | undefined;
}

export interface CostReport {
  totalMacs: number;
  totalParams: number;
  totalBuffers: number;
  /** Params of Conv/ConvTranspose/Gemm/MatMul (weights and biases). */
  convLinearParams: number;
  /** Params of BatchNormalization (gamma and beta). */
  bnAffineParams: number;
  /** The input shapes the MACs were counted at (batch dim 1). */
  inputShapes: Record<string, number[]>;
  /** Every counted node (Conv, ConvTranspose, Gemm, MatMul, BatchNormalization), in graph order. */
  perNode: LayerCost[];
  macsByOp: Record<string, number>;
}

export interface CostOptions {
  /**
   * Shape of the data input (one input), or shapes by input name. The batch dim (dim 0) is counted as 1
   * whatever is given. Default: each input's declared shape with the batch as 1.
   */
  inputShape?: number[] | Record<string, number[]>;
}

/** Op types whose multiply-adds count as MACs. */
export const MAC_OPS: readonly string[] = ['Conv', 'ConvTranspose', 'Gemm', 'MatMul'];

/** Where the cost model reads a value's shape. */
export type ShapeOf = (v: Value) => readonly Dim[] | undefined;

/**
 * Counts MACs and params. Shapes come from shape analysis at the given input shape (batch 1); the model is
 * not changed (its value types keep the symbolic batch, so a model counted and then saved is unaffected).
 */
export function countCost(model: Model, options: CostOptions = {}): CostReport {
  const inputShapes = resolveInputShapes(model, options.inputShape);
  const { info } = analyzeShapes(model, { inputShapes });
  return measureCost(model, inputShapes, (v) => info.get(v)?.shape ?? v.shape);
}

/** The graph inputs that carry data (not initializers listed as inputs, as IR < 4 files do). */
export function dataInputs(model: Model): Value[] {
  return model.graph.inputs.filter((v) => !v.isInitializer);
}

/**
 * The static shape of every data input, batch dim set to 1. A dim past the batch that is symbolic or unknown
 * and not given is a UserError naming the input.
 */
export function resolveInputShapes(
  model: Model,
  given?: number[] | Record<string, number[]>,
): Record<string, number[]> {
  const inputs = dataInputs(model);
  const where = model.sourcePath;
  let byName: Record<string, number[]> = {};
  if (Array.isArray(given)) {
    if (inputs.length !== 1)
      throw new UserError(
        `the model has ${inputs.length} data inputs (${inputs.map((v) => v.name).join(', ')}); give each input's shape by name`,
        where,
      );
    byName = { [inputs[0]!.name]: given };
  } else if (given) {
    for (const name of Object.keys(given))
      if (!inputs.some((v) => v.name === name))
        throw new UserError(`the model has no input '${name}'`, where);
    byName = given;
  }
  const out: Record<string, number[]> = {};
  for (const input of inputs) {
    const declared = input.shape;
    const shape = byName[input.name];
    if (shape) {
      if (shape.length === 0 || shape.some((d) => !Number.isSafeInteger(d) || d <= 0))
        throw new UserError(
          `input shape ${shape.join('x')} for '${input.name}' must be positive integers`,
          where,
        );
      if (declared && declared.length !== shape.length)
        throw new UserError(
          `input '${input.name}' has rank ${declared.length} (${shapeToString(declared)}), the given shape ${shape.join('x')} has rank ${shape.length}`,
          where,
        );
      out[input.name] = [1, ...shape.slice(1)];
      continue;
    }
    if (!declared || declared.slice(1).some((d) => typeof d !== 'number'))
      throw new UserError(
        `input '${input.name}' has shape ${shapeToString(declared)}, whose dims past the batch are not all known: give an input shape (e.g. --input-shape 1x3x224x224)`,
        where,
      );
    out[input.name] = declared.length === 0 ? [] : [1, ...(declared.slice(1) as number[])];
  }
  return out;
}

/** Counts costs from shapes already known at batch 1 (by default the value types on the model). */
export function measureCost(
  model: Model,
  inputShapes: Record<string, number[]> = {},
  shapeOf: ShapeOf = (v) => v.shape,
): CostReport {
  const perNode: LayerCost[] = [];
  const macsByOp: Record<string, number> = {};
  let convLinearParams = 0;
  let bnAffineParams = 0;
  for (const node of model.graph.nodes) {
    const cost = nodeCost(node, shapeOf);
    if (!cost) continue;
    perNode.push(cost);
    if (MAC_OPS.includes(node.opType)) convLinearParams += cost.params;
    else bnAffineParams += cost.params;
    if (cost.macs > 0) macsByOp[node.opType] = (macsByOp[node.opType] ?? 0) + cost.macs;
  }
  const sum = (f: (c: LayerCost) => number): number => perNode.reduce((a, c) => a + f(c), 0);
  return {
    totalMacs: sum((c) => c.macs),
    totalParams: sum((c) => c.params),
    totalBuffers: sum((c) => c.buffers),
    convLinearParams,
    bnAffineParams,
    inputShapes,
    perNode,
    macsByOp,
  };
}

function nodeCost(node: Node, shapeOf: ShapeOf): LayerCost | undefined {
  switch (node.opType) {
    case 'Conv':
    case 'ConvTranspose':
      return convCost(node, shapeOf);
    case 'Gemm':
      return gemmCost(node, shapeOf);
    case 'MatMul':
      return matMulCost(node, shapeOf);
    case 'BatchNormalization':
      return batchNormCost(node);
    default:
      return undefined;
  }
}

function layer(node: Node, fields: Omit<LayerCost, 'name' | 'opType'>): LayerCost {
  return { name: node.name || node.outputs[0]?.name || '', opType: node.opType, ...fields };
}

/** A constant behind `v`: an initializer, possibly through Identity nodes (torch dedups equal tensors that way). */
function constantOf(v: Value | undefined): { name: string; dims: readonly number[] } | undefined {
  for (let seen = 0; v && seen < 64; seen++) {
    if (v.initializer) return { name: v.name, dims: v.initializer.dims };
    const p = v.producer;
    if (!p) return undefined;
    if (p.opType === 'Identity') v = p.inputs[0];
    else if (p.opType === 'Constant') {
      const a = p.attr('value');
      return a?.type === AttributeType.TENSOR ? { name: v.name, dims: a.value.dims } : undefined;
    } else return undefined;
  }
  return undefined;
}

const product = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

function staticDims(node: Node, v: Value | undefined, what: string, shapeOf: ShapeOf): number[] {
  const shape = v ? shapeOf(v) : undefined;
  if (!shape || shape.some((d) => typeof d !== 'number'))
    throw new UserError(
      `cannot count MACs: the shape of its ${what} '${v?.name ?? ''}' is ${shapeToString(shape)} after shape inference`,
      undefined,
      node.name,
    );
  return shape as number[];
}

function weightDims(
  node: Node,
  v: Value | undefined,
  shapeOf: ShapeOf,
): { name: string | undefined; dims: readonly number[] } {
  const c = constantOf(v);
  if (c) return c;
  return { name: undefined, dims: staticDims(node, v, 'weight', shapeOf) };
}

function convCost(node: Node, shapeOf: ShapeOf): LayerCost {
  const w = weightDims(node, node.inputs[1], shapeOf);
  const bias = constantOf(node.inputs[2]);
  const group = node.attrInt('group', 1);
  // Each weight element is used once per output pixel (Conv) or once per input pixel (ConvTranspose).
  const transpose = node.opType === 'ConvTranspose';
  const pixels = transpose
    ? product(staticDims(node, node.inputs[0], 'input', shapeOf).slice(2))
    : product(staticDims(node, node.outputs[0], 'output', shapeOf).slice(2));
  const weighted = constantOf(node.inputs[1]) !== undefined;
  return layer(node, {
    outChannels: transpose ? w.dims[1]! * group : w.dims[0],
    macs: pixels * product(w.dims),
    params: (weighted ? product(w.dims) : 0) + (bias ? product(bias.dims) : 0),
    buffers: 0,
    weight: w.name,
  });
}

function gemmCost(node: Node, shapeOf: ShapeOf): LayerCost {
  const bConst = constantOf(node.inputs[1]);
  const b = bConst?.dims ?? staticDims(node, node.inputs[1], 'input B', shapeOf);
  const transB = node.attrInt('transB', 0) !== 0;
  const [k, n] = transB ? [b[1]!, b[0]!] : [b[0]!, b[1]!];
  // Rows of the output: the batch for a CNN head, which the analysis took as 1.
  const m = staticDims(node, node.outputs[0], 'output', shapeOf)[0]!;
  const c = constantOf(node.inputs[2]);
  return layer(node, {
    outChannels: n,
    macs: m * k * n,
    params: (bConst ? product(b) : 0) + (c ? product(c.dims) : 0),
    buffers: 0,
    weight: bConst?.name,
  });
}

/** MatMul with a constant operand is a Linear layer; an Add of a constant right after it is its bias. */
function matMulCost(node: Node, shapeOf: ShapeOf): LayerCost {
  const out = staticDims(node, node.outputs[0], 'output', shapeOf);
  const aConst = constantOf(node.inputs[0]);
  const bConst = constantOf(node.inputs[1]);
  const bDims = bConst?.dims ?? staticDims(node, node.inputs[1], 'input B', shapeOf);
  const aDims = aConst?.dims ?? staticDims(node, node.inputs[0], 'input A', shapeOf);
  const k = aDims.length === 0 ? 1 : aDims[aDims.length - 1]!;
  const params = (aConst ? product(aConst.dims) : 0) + (bConst ? product(bConst.dims) : 0);
  const bias = params > 0 ? linearBias(node) : 0;
  return layer(node, {
    outChannels: bDims.length >= 2 ? bDims[bDims.length - 1] : undefined,
    macs: product(out) * k,
    params: params + bias,
    buffers: 0,
    weight: (bConst ?? aConst)?.name,
  });
}

function linearBias(node: Node): number {
  const uses = node.outputs[0]?.uses ?? [];
  if (uses.length !== 1 || uses[0]!.node.opType !== 'Add') return 0;
  const add = uses[0]!.node;
  const other = constantOf(add.inputs[1 - uses[0]!.index]);
  return other ? product(other.dims) : 0;
}

function batchNormCost(node: Node): LayerCost {
  const size = (i: number): number => {
    const c = constantOf(node.inputs[i]);
    return c ? product(c.dims) : 0;
  };
  const scale = constantOf(node.inputs[1]);
  return layer(node, {
    outChannels: scale ? product(scale.dims) : undefined,
    macs: 0,
    params: size(1) + size(2),
    buffers: size(3) + size(4),
    weight: scale?.name,
  });
}
