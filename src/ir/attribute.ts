import type { Graph } from './graph.js';
import type { Tensor } from './tensor.js';

export enum AttributeType {
  UNDEFINED = 0,
  FLOAT = 1,
  INT = 2,
  STRING = 3,
  TENSOR = 4,
  GRAPH = 5,
  FLOATS = 6,
  INTS = 7,
  STRINGS = 8,
  TENSORS = 9,
  GRAPHS = 10,
  SPARSE_TENSOR = 11,
  SPARSE_TENSORS = 12,
  TYPE_PROTO = 13,
  TYPE_PROTOS = 14,
}

/** int64 values stay numbers when they fit exactly, else bigint (INT64_MAX in Slice ends must survive). */
export type Int = number | bigint;

export type AttributeValue =
  | { type: AttributeType.FLOAT; value: number }
  | { type: AttributeType.INT; value: Int }
  | { type: AttributeType.STRING; value: Uint8Array }
  | { type: AttributeType.TENSOR; value: Tensor }
  | { type: AttributeType.GRAPH; value: Graph }
  | { type: AttributeType.FLOATS; value: number[] }
  | { type: AttributeType.INTS; value: Int[] }
  | { type: AttributeType.STRINGS; value: Uint8Array[] }
  | { type: AttributeType.TENSORS; value: Tensor[] }
  | { type: AttributeType.GRAPHS; value: Graph[] }
  /** Sparse tensors, type protos and reference attributes are carried as their decoded messages. */
  | {
      type:
        | AttributeType.SPARSE_TENSOR
        | AttributeType.SPARSE_TENSORS
        | AttributeType.TYPE_PROTO
        | AttributeType.TYPE_PROTOS
        | AttributeType.UNDEFINED;
      value: unknown;
    };

export type Attribute = AttributeValue & {
  /** Fields the IR does not model (doc_string, ref_attr_name), re-emitted as they came. */
  extra?: Record<string, unknown>;
};

export function intAttr(value: Int): Attribute {
  return { type: AttributeType.INT, value };
}
export function intsAttr(value: Int[]): Attribute {
  return { type: AttributeType.INTS, value };
}
export function floatAttr(value: number): Attribute {
  return { type: AttributeType.FLOAT, value };
}
export function floatsAttr(value: number[]): Attribute {
  return { type: AttributeType.FLOATS, value };
}
export function stringAttr(value: string): Attribute {
  return { type: AttributeType.STRING, value: new TextEncoder().encode(value) };
}
export function tensorAttr(value: Tensor): Attribute {
  return { type: AttributeType.TENSOR, value };
}
