import type { Model, Node, Tensor, Value } from '../ir/index.js';
import type { Dim } from '../ir/types.js';

/**
 * What the compiler knows about one op kind, in one place (docs/pruning.md, "Adding an op"). The channel
 * analysis calls `link` for every node that touches a tracked channel space; the rewrite calls `slice` with
 * the data `link` recorded; the criteria read the filter layout a producer declared; compensation asks
 * `linearUse`; inspect's cost model calls `cost`. Gradients live in the gradient registry (src/train/grad-rules).
 */
export interface ChannelOp<D = unknown> {
  /** The op types this handler serves (default ONNX domain). */
  readonly opTypes: readonly string[];
  /** Links the node's channel positions, records rewrite data, cost terms, producers and norms. */
  link(node: Node, ins: readonly (Space | undefined)[], ctx: LinkContext): void;
  /** Rewrites `node` (of the model being pruned) to the kept channels; `data` is what `link` recorded. */
  slice?(node: Node, data: D, ctx: SliceContext): void;
  /** How the node reads a pruned space linearly (for compensation), or why it does not. */
  linearUse?(node: Node, data: D): LinearUse | string;
  /** MACs and parameters of the node at known shapes (inspect's cost model, batch 1). */
  cost?(node: Node, shapeOf: ShapeOf): LayerCost;
  /**
   * Whether the node starts channel data from constants alone, so `link` runs even when no input carries a
   * tracked space (an embedding table read by token ids).
   */
  startsSpaces?(node: Node): boolean;
}

/** A (value, axis) pair carrying channels; positions 0..size-1. */
export interface Space {
  id: number;
  value: Value;
  axis: number;
  size: number;
  /** Global id of position 0 (positions are numbered across all spaces). */
  base: number;
  /** Set once groups are formed. */
  group: number;
  /** Position -> class index within the group. */
  classOf: Int32Array;
}

/** A MAC or parameter count: coef times the kept counts of the listed spaces. */
export interface CostTerm {
  node: Node;
  kind: 'macs' | 'params';
  coef: number;
  spaces: Space[];
}

/** The data a handler recorded at one node; the rewrite hands it back to the same handler. */
export interface OpRecord<D = unknown> {
  op: ChannelOp<D>;
  node: Node;
  data: D;
}

/** A constant input holding one value per channel along `axis` (BN vectors, PRelu slopes, per-channel Add). */
export interface PerChannel {
  kind: 'perChannel';
  index: number;
  axis: number;
  space: Space;
  role: 'scale' | 'bias' | 'mean' | 'var' | 'slope' | 'operand';
}

/**
 * Where producer output channel p's filter lies in the weight data: data[p*rowStep + i*stride] for i < len,
 * or (`blocks`, ConvTranspose) `count` runs of `size` contiguous values `step` apart, starting at p·size.
 */
export interface FilterLayout {
  weight: Tensor;
  len: number;
  rowStep: number;
  stride: number;
  blocks?: { count: number; step: number; size: number };
  /** Input index of a bias with one value per output channel, if any. */
  bias?: number;
}

/** A linear consumer of a channel space: y = W x (+ b), W = input `weight` with the input channels on `inAxis`. */
export interface LinearUse {
  input: Space;
  output: Space;
  weight: number;
  inAxis: number;
  outAxis: number;
}

/** The analysis's view while linking: dims, constants, and the operations that build spaces and links. */
export interface LinkContext {
  readonly model: Model;
  readonly opset: number;
  dims(v: Value | undefined): number[] | undefined;
  /** Integer data of a constant or of shape arithmetic the probe evaluated. */
  ints(v: Value | undefined): number[] | undefined;
  isConst(v: Value | undefined): boolean;
  /** The space a value already carries (a value other than the node's inputs, such as the tensor a Shape read). */
  carried(v: Value | undefined): Space | undefined;
  newSpace(value: Value, axis: number, reason?: string): Space | undefined;
  link(a: Space, i: number, b: Space, j: number): void;
  /** Links a and b one to one (freezes both when their sizes differ). */
  same(a: Space, b: Space, node: Node): void;
  /** A new output space on `axis` linked one to one with `input`. */
  passThrough(input: Space, node: Node, out: Value, axis?: number): Space | undefined;
  /** Freezes the node's inputs and gives its outputs frozen spaces: the handler does not understand it. */
  unknown(node: Node, why: string): void;
  freeze(s: Space | undefined, reason: string): void;
  record<D>(node: Node, data: D): void;
  cost(node: Node, kind: 'macs' | 'params', coef: number, spaces: Space[]): void;
  /** The node's output channels in `space` are filters (laid out as `layout` says) that score the classes. */
  producer(node: Node, space: Space, layout: FilterLayout): void;
  /** A BatchNormalization over `space`: its gamma scores the group (AdaPruner's block importance). */
  norm(node: Node, space: Space): void;
}

/** The rewrite's view: the kept positions of every space and the edits a handler may make. */
export interface SliceContext {
  readonly model: Model;
  readonly opset: number;
  kept(s: Space): Int32Array;
  changed(s: Space | undefined): boolean;
  /** Slices constant input `index` of `node` along each listed axis to the kept positions of its space. */
  sliceInput(node: Node, index: number, axes: [number, Space | undefined][]): void;
  /** Points input `index` at `tensor` (in place when only this node reads the initializer). */
  setInput(node: Node, index: number, tensor: Tensor): void;
  /** An int tensor of the same type as `like` (int32 or int64) holding `values`. */
  ints(like: Tensor | undefined, values: number[]): Tensor;
}

/** Where the cost model reads a value's shape. */
export type ShapeOf = (v: Value) => readonly Dim[] | undefined;

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
