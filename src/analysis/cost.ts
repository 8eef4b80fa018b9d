import { UserError } from '../errors.js';
import type { Node, Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { shapeToString } from '../ir/types.js';
import { opHandler } from '../ops/registry.js';
import type { LayerCost, ShapeOf } from '../ops/types.js';
import { analyzeShapes } from '../passes/infer-shapes.js';
import { probeShapes } from '../shapes/probe.js';

/**
 * The cost model (docs/cost-model.md): multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul for ONE
 * image, and parameter counts (weights and biases of those ops, BatchNormalization gamma/beta). Everything
 * else (BN, activations, pooling, elementwise ops, bias additions) costs 0 MACs.
 */

export type { LayerCost, ShapeOf } from '../ops/types.js';

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

/**
 * Counts MACs and params. Shapes come from shape analysis at the given input shape (batch 1); the model is
 * not changed (its value types keep the symbolic batch, so a model counted and then saved is unaffected).
 */
export function countCost(model: Model, options: CostOptions = {}): CostReport {
  const inputShapes = resolveInputShapes(model, options.inputShape);
  const { info } = analyzeShapes(model, { inputShapes });
  return measureCost(model, inputShapes, (v) => info.get(v)?.shape ?? v.shape);
}

/**
 * The same count through the one shape path prune uses (src/shapes/probe.ts): static shape analysis, and
 * onnxruntime for whatever it cannot determine, so inspect counts every model prune can analyse.
 */
export async function countCostProbed(
  model: Model,
  options: CostOptions & { warn?: (message: string) => void } = {},
): Promise<CostReport> {
  const inputShapes = resolveInputShapes(model, options.inputShape);
  const probe = await probeShapes(model, new Map(Object.entries(inputShapes)), options.warn);
  return measureCost(model, inputShapes, (v) => probe.dims.get(v) ?? v.shape);
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
        `input '${input.name}' has shape ${shapeToString(declared)}, whose dims past the batch are not all known: give an input shape (e.g. --input-shape ${exampleShape(input, inputs.length > 1)})`,
        where,
      );
    out[input.name] = declared.length === 0 ? [] : [1, ...(declared.slice(1) as number[])];
  }
  return out;
}

/** An --input-shape value for `input` as a user would write it: open dims as 224 (images) or 128 (tokens). */
function exampleShape(input: Value, named: boolean): string {
  const dims = input.shape ?? [];
  const open = dims.length === 4 ? 224 : 128;
  const shape = dims.map((d, i) => (i === 0 ? 1 : typeof d === 'number' ? d : open)).join('x');
  return named ? `${input.name}=${shape}` : shape;
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

/** The op's cost rule from the registry (src/ops): Conv, ConvTranspose, Gemm, MatMul, BatchNormalization. */
function nodeCost(node: Node, shapeOf: ShapeOf): LayerCost | undefined {
  return opHandler(node.opType)?.cost?.(node, shapeOf);
}
