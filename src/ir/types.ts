import type { DataType } from './data-type.js';

/** A dimension: a size, a symbolic name (the batch 'N'), or unknown. */
export type Dim = number | string | null;

/** What a value is known to be. Only tensors are modelled; other types keep their message for the writer. */
export type ValueType =
  { kind: 'tensor'; elemType: DataType; shape: Dim[] | undefined } | { kind: 'other'; proto: unknown };

export function tensorType(elemType: DataType, shape: Dim[] | undefined): ValueType {
  return { kind: 'tensor', elemType, shape };
}

export function shapeToString(shape: readonly Dim[] | undefined): string {
  if (!shape) return '?';
  return shape.map((d) => (d === null ? '?' : String(d))).join('x') || 'scalar';
}

/** Product of the dims if all are known numbers. */
export function staticSize(shape: readonly Dim[] | undefined): number | undefined {
  if (!shape) return undefined;
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number') return undefined;
    n *= d;
  }
  return n;
}
