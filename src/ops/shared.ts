import { UserError } from '../errors.js';
import { constantSource, shapeToString, type Node, type Value } from '../ir/index.js';
import type { LayerCost, LinkContext, PerChannel, ShapeOf, SliceContext, Space } from './types.js';

/** Helpers several op handlers share. */

export const prod = (xs: readonly number[]): number => xs.reduce((a, b) => a * b, 1);

/** Records a constant input of `node` holding one value per channel of `space` along `axis`. */
export function perChannel(
  ctx: LinkContext,
  node: Node,
  index: number,
  axis: number,
  space: Space,
  role: PerChannel['role'],
): void {
  ctx.record<PerChannel>(node, { kind: 'perChannel', index, axis, space, role });
}

export function slicePerChannel(node: Node, data: PerChannel, ctx: SliceContext): void {
  ctx.sliceInput(node, data.index, [[data.axis, data.space]]);
}

// ---- inspect's cost model (src/analysis/cost.ts) ----

/**
 * A per-channel normalisation's cost: no MACs, scale (input 1) and bias (input 2) as parameters, and the
 * inputs listed in `bufferInputs` (BN's running mean and variance) as buffers.
 */
export function normalizationCost(node: Node, bufferInputs: readonly number[] = []): LayerCost {
  const size = (i: number): number => {
    const c = constDims(node.inputs[i]);
    return c ? prod(c.dims) : 0;
  };
  const scale = constDims(node.inputs[1]);
  return layerCost(node, {
    outChannels: scale ? prod(scale.dims) : undefined,
    macs: 0,
    params: size(1) + size(2),
    buffers: bufferInputs.reduce((a, i) => a + size(i), 0),
    weight: scale?.name,
  });
}

export function layerCost(node: Node, fields: Omit<LayerCost, 'name' | 'opType'>): LayerCost {
  return { name: node.name || node.outputs[0]?.name || '', opType: node.opType, ...fields };
}

/** The constant's holder name and dims, as the cost model reports them. */
export function constDims(v: Value | undefined): { name: string; dims: readonly number[] } | undefined {
  const c = constantSource(v);
  return c && { name: c.holder.name, dims: c.tensor.dims };
}

export function staticDims(node: Node, v: Value | undefined, what: string, shapeOf: ShapeOf): number[] {
  const shape = v ? shapeOf(v) : undefined;
  if (!shape || shape.some((d) => typeof d !== 'number'))
    throw new UserError(
      `cannot count MACs: the shape of its ${what} '${v?.name ?? ''}' is ${shapeToString(shape)} after shape inference`,
      undefined,
      node.name,
    );
  return shape as number[];
}

export function weightDims(
  node: Node,
  v: Value | undefined,
  shapeOf: ShapeOf,
): { name: string | undefined; dims: readonly number[] } {
  const c = constDims(v);
  if (c) return c;
  return { name: undefined, dims: staticDims(node, v, 'weight', shapeOf) };
}
