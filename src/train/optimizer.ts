import { DataType } from '../ir/data-type.js';
import { Value } from '../ir/graph.js';
import { tensorType } from '../ir/types.js';
import type { Emitter } from './emitter.js';

/** The update rule: torch.optim.SGD, or torch.optim.AdamW (decoupled weight decay). */
export type OptimizerKind = 'sgd' | 'adamw';
export const OPTIMIZER_KINDS: readonly OptimizerKind[] = ['sgd', 'adamw'];

export interface SgdOptions {
  /** Default `sgd`. */
  optimizer?: OptimizerKind;
  /** Default 0.9 (SGD momentum; AdamW's beta1). 0 drops SGD's momentum buffers. */
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
  /** AdamW's running mean of squared gradients. */
  secondIn?: Value;
  secondOut?: Value;
}

/** AdamW's first-moment decay: the momentum option, torch's 0.9 by default. */
export function adamBeta1(o: SgdOptions): number {
  return o.momentum ?? 0.9;
}

/** AdamW's second-moment decay and denominator term (torch's defaults). */
export const ADAM_BETA2 = 0.999;
export const ADAM_EPS = 1e-8;

/**
 * AdamW's peak rate where none is given (Adam's usual 3e-4). Label-free distillation of the trained yolov8n-width
 * SynthDet detector at 50% MACs (compensated start, batches of 16, docs/history.md "Seventh pass"): one epoch of
 * 300 images at 0.001 / 3e-4 / 1e-4 kept 83.0 / 85.2 / 85.3% of mAP50-95 (SGD at 0.01: 84.8%); one epoch of 2,000
 * images at 3e-4 / 1e-4 kept 87.7 / 87.4% (SGD 0.01: 86.3%, 0.003: 86.5%).
 */
export const DEFAULT_ADAMW_LR = 3e-4;

/** The SGD options with the optimizer set, leaving `sgd` out (the options of runs before AdamW existed). */
export function withOptimizer(sgd: SgdOptions, optimizer: OptimizerKind | undefined): SgdOptions {
  return optimizer && optimizer !== 'sgd' ? { ...sgd, optimizer } : sgd;
}

/**
 * AdamW's bias corrections at step t (from 1), fed as scalar inputs so that one graph serves every step:
 * `m` = 1 / (1 - beta1^t) and `v` = 1 / (1 - beta2^t).
 */
export function adamCorrections(beta1: number, t: number): { m: number; v: number } {
  return { m: 1 / (1 - beta1 ** t), v: 1 / (1 - ADAM_BETA2 ** t) };
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
  corrections?: { m: Value; v: Value },
): ParamUpdate[] {
  if ((o.optimizer ?? 'sgd') === 'adamw') return addAdamW(e, updates, lr, o, corrections!);
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

/**
 * torch.optim.AdamW in the graph: w *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g²;
 * w -= lr * m*cm / (sqrt(v*cv) + eps), with the bias corrections cm and cv inputs (adamCorrections). Zero
 * buffers on the first step give torch's first step exactly. Decay applies where SGD's does.
 */
function addAdamW(
  e: Emitter,
  updates: { param: Value; grad: Value }[],
  lr: Value,
  o: SgdOptions,
  corrections: { m: Value; v: Value },
): ParamUpdate[] {
  const beta1 = adamBeta1(o);
  const wdBase = o.weightDecay ?? 5e-4;
  const buffer = (param: Value, suffix: string): Value =>
    new Value(
      e.graph.uniqueName(`${param.name}__${suffix}`),
      tensorType(DataType.FLOAT, [...(param.shape as number[])]),
    );
  return updates.map(({ param, grad }) => {
    const shape = param.shape as number[];
    const weightDecay = o.decayAll || shape.length >= 2 ? wdBase : 0;
    const momentumIn = buffer(param, 'momentum');
    const secondIn = buffer(param, 'second_moment');
    const momentumOut = e.add(e.scale(momentumIn, beta1), e.scale(grad, 1 - beta1));
    momentumOut.name = e.graph.uniqueName(`${param.name}__momentum__new`);
    const secondOut = e.add(e.scale(secondIn, ADAM_BETA2), e.scale(e.mul(grad, grad), 1 - ADAM_BETA2));
    secondOut.name = e.graph.uniqueName(`${param.name}__second_moment__new`);
    const denominator = e.add(e.op('Sqrt', [e.mul(secondOut, corrections.v)]), e.scalar(ADAM_EPS));
    const direction = e.op('Div', [e.mul(momentumOut, corrections.m), denominator]);
    const decayed = weightDecay ? e.sub(param, e.mul(e.scale(param, weightDecay), lr)) : param;
    const updated = e.sub(decayed, e.mul(direction, lr));
    updated.name = e.graph.uniqueName(`${param.name}__new`);
    return { param, updated, weightDecay, momentumIn, momentumOut, secondIn, secondOut };
  });
}
