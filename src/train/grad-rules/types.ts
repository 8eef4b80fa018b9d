import type { Node, Value } from '../../ir/graph.js';
import type { Emitter } from '../emitter.js';

/** What a backward rule sees of the forward node it differentiates. */
export interface GradContext {
  e: Emitter;
  node: Node;
  /** The gradient flowing into output `i` (summed over its consumers), or undefined when none reaches it. */
  dy(i?: number): Value | undefined;
  /** Whether input `i` needs a gradient (it depends on a trainable parameter). */
  needs(i: number): boolean;
  /** Static shape of a forward value at the step graph's batch size. */
  shape(v: Value): number[];
  /** Static contents of a value computed from constants only (slice bounds, pads, clip limits). */
  constant(v: Value): number[];
  /** Throws a UserError naming the node. */
  fail(message: string): never;
}

/** Gradients for the node's inputs, by input index (undefined where not needed). */
export type GradRule = (ctx: GradContext) => (Value | undefined)[];

/** Sums `g` (of shape `from`) over broadcast axes so it takes the shape `to` (numpy broadcasting). */
export function reduceToShape(ctx: GradContext, g: Value, from: number[], to: number[]): Value {
  const padded = [...Array(from.length - to.length).fill(1), ...to];
  const axes = from.map((d, i) => (padded[i] === 1 && d !== 1 ? i : -1)).filter((i) => i >= 0);
  let out = axes.length ? ctx.e.reduceSum(g, axes, true) : g;
  if (padded.length !== to.length) out = ctx.e.reshape(out, to);
  return out;
}
