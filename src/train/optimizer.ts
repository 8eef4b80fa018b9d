import { DataType } from '../ir/data-type.js';
import { Value } from '../ir/graph.js';
import { tensorType } from '../ir/types.js';
import type { Emitter } from './emitter.js';

export interface SgdOptions {
  /** Default 0.9. 0 drops the momentum buffers. */
  momentum?: number;
  nesterov?: boolean;
  /** Default 5e-4, applied to weights of rank >= 2 only (not BN scales/shifts or biases) unless `decayAll`. */
  weightDecay?: number;
  decayAll?: boolean;
}

export interface ParamUpdate {
  param: Value;
  updated: Value;
  weightDecay: number;
  momentumIn?: Value;
  momentumOut?: Value;
}

/**
 * torch.optim.SGD (dampening 0) in the graph: g += wd*w; buf = mom*buf + g; w -= lr*buf
 * (Nesterov: w -= lr*(g + mom*buf)). The learning rate is an input, so schedules need no new graph.
 * A zero momentum buffer on the first step gives torch's buf = g exactly.
 */
export function addOptimizer(
  e: Emitter,
  updates: { param: Value; grad: Value }[],
  lr: Value,
  o: SgdOptions,
): ParamUpdate[] {
  const momentum = o.momentum ?? 0.9;
  const wdBase = o.weightDecay ?? 5e-4;
  return updates.map(({ param, grad }) => {
    const shape = param.shape as number[];
    const weightDecay = o.decayAll || shape.length >= 2 ? wdBase : 0;
    let g = weightDecay ? e.add(grad, e.scale(param, weightDecay)) : grad;
    let momentumIn: Value | undefined;
    let momentumOut: Value | undefined;
    if (momentum) {
      momentumIn = new Value(
        e.graph.uniqueName(`${param.name}__momentum`),
        tensorType(DataType.FLOAT, [...shape]),
      );
      momentumOut = e.add(e.scale(momentumIn, momentum), g);
      momentumOut.name = e.graph.uniqueName(`${param.name}__momentum__new`);
      g = o.nesterov ? e.add(g, e.scale(momentumOut, momentum)) : momentumOut;
    }
    const updated = e.sub(param, e.mul(g, lr));
    updated.name = e.graph.uniqueName(`${param.name}__new`);
    return { param, updated, weightDecay, momentumIn, momentumOut };
  });
}
