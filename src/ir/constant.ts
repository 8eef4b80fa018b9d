import { AttributeType } from './attribute.js';
import type { Value } from './graph.js';
import type { Tensor } from './tensor.js';

/** Where a constant comes from: the value that holds it (an initializer or a Constant's output) and its tensor. */
export interface ConstantSource {
  holder: Value;
  tensor: Tensor;
}

/**
 * The constant behind `v`: an initializer, a Constant node's `value` tensor, or either behind Identity nodes
 * (torch dedups equal parameters through Identity). The one constant lookup of the compiler.
 */
export function constantSource(v: Value | undefined): ConstantSource | undefined {
  // A bound, not a cycle guard alone: an Identity chain this long is not an exporter's output.
  for (let depth = 0; v && depth < 64; depth++) {
    if (v.initializer) return { holder: v, tensor: v.initializer };
    const p = v.producer;
    if (!p) return undefined;
    if (p.opType === 'Constant') {
      const a = p.attr('value');
      return a?.type === AttributeType.TENSOR ? { holder: v, tensor: a.value } : undefined;
    }
    if (p.opType !== 'Identity') return undefined;
    v = p.inputs[0];
  }
  return undefined;
}

export function constantOf(v: Value | undefined): Tensor | undefined {
  return constantSource(v)?.tensor;
}
