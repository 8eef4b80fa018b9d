import type { Graph, Node, Value } from '../../ir/graph.js';
import { Emitter } from '../emitter.js';

/** Batch moments of `x` over `axes` (kept as size-1 dims), as train-mode BatchNormalization computes them. */
export interface BatchMoments {
  mean: Value;
  centered: Value;
  /** The biased variance (divided by the count), which train-mode BN normalises with. */
  biasedVar: Value;
}

/**
 * The one expansion of train-mode BatchNormalization statistics in standard ops, shared by the training step
 * and the statistics graph of adaptive BN (src/passes/bn-stats-graph.ts), valid in the emitter's opset.
 */
export function emitBatchMoments(e: Emitter, x: Value, axes: number[]): BatchMoments {
  const mean = e.reduceMean(x, axes, true);
  const centered = e.sub(x, mean);
  // Not ReduceSumSquare: onnxruntime's accumulates in an order that made the gradient error against torch
  // 2.5x larger (ResNet-20: 3.9e-6 -> 9.6e-6), for one pass saved.
  const biasedVar = e.reduceMean(e.mul(centered, centered), axes, true);
  return { mean, centered, biasedVar };
}

/**
 * x * scale + shift per channel (scale, shift [C]) in one pass: an inference BatchNormalization with mean 0,
 * variance 1 and epsilon 0, so its own factors are exactly scale and shift. onnxruntime's Mul and Add with a
 * [1,C,1,1] operand are two passes: 2.30 ms against 1.72 on [128,16,32,32], 0.68 against 0.36 on [128,64,8,8]
 * (best of 30, 2 threads, on a loaded machine; this kernel runs on one thread, the Mul and Add on both).
 */
function affine(e: Emitter, x: Value, scale: Value, shift: Value, c: number): Value {
  const zeros = e.floats(new Float32Array(c), [c], 'zeros');
  const ones = e.floats(new Float32Array(c).fill(1), [c], 'ones');
  return e.op('BatchNormalization', [x, scale, shift, zeros, ones], { epsilon: { float: 0 } });
}

/** What the backward rule of a train-mode BN reuses from its forward expansion. */
export interface BatchNormSaved {
  x: Value;
  /** x minus the batch mean; the backward reads it where the textbook reads xhat = centered * invStd. */
  centered: Value;
  /** 1 / sqrt(biased variance + eps), [1, C, 1, 1]. */
  invStd: Value;
  /** gamma * invStd, [1, C, 1, 1]. */
  scaleFactor: Value;
  gamma: Value;
  beta: Value;
  axes: number[];
  count: number;
  channelShape: number[];
}

export interface TrainingBatchNorm {
  /** The normalised output, replacing the BN's output. */
  y: Value;
  saved: BatchNormSaved;
  /** The updated running statistics, torch's way (momentum on the unbiased batch variance). */
  newMean: Value;
  newVar: Value;
}

/**
 * Replaces an inference BatchNormalization by its train-mode computation on batch statistics, written out in
 * standard ops (before the BN's position, so the graph stays sorted) so that the backward rule can reuse xhat.
 */
export function expandTrainingBatchNorm(
  g: Graph,
  bn: Node,
  xShape: number[],
  opset: number,
): TrainingBatchNorm {
  const [x, gamma, beta, mean, variance] = [0, 1, 2, 3, 4].map((i) => bn.input(i)) as Value[];
  const axes = xShape.map((_, i) => i).filter((i) => i !== 1);
  const count = axes.reduce((a, i) => a * xShape[i]!, 1);
  const c = xShape[1]!;
  const channelShape = xShape.map((d, i) => (i === 1 ? d : 1));
  const eps = bn.attrFloat('epsilon', 1e-5);
  const momentum = bn.attrFloat('momentum', 0.9); // ONNX: the weight of the old running statistic
  const b = new Emitter(g, `${bn.name || bn.output().name}/train/`, { opset, before: bn });
  const { mean: mu, centered, biasedVar } = emitBatchMoments(b, x!, axes);
  const invStd = b.op('Reciprocal', [b.op('Sqrt', [b.add(biasedVar, b.scalar(eps))])]);
  const scaleFactor = b.mul(b.reshape(gamma!, channelShape), invStd);
  // y = gamma * xhat + beta straight from `centered`: xhat itself is never written out (one [N,C,H,W] pass
  // and one saved tensor fewer per BN); the backward folds invStd into its per-channel factors instead.
  const y = affine(b, centered, b.reshape(scaleFactor, [c]), beta!, c);
  // torch updates running_var with the unbiased batch variance.
  const unbiased = count > 1 ? count / (count - 1) : 1;
  const newMean = b.add(b.scale(mean!, momentum), b.scale(b.reshape(mu, [c]), 1 - momentum));
  const newVar = b.add(
    b.scale(variance!, momentum),
    b.scale(b.reshape(biasedVar, [c]), (1 - momentum) * unbiased),
  );
  g.replaceAllUsesWith(bn.output(), y);
  g.removeNode(bn);
  return {
    y,
    saved: { x: x!, centered, invStd, scaleFactor, gamma: gamma!, beta: beta!, axes, count, channelShape },
    newMean,
    newVar,
  };
}

/**
 * dbeta = sum(dy), dgamma = sum(dy * xhat), and with k = gamma / sqrt(var + eps):
 * dx = k * (dy - (dbeta + xhat * dgamma) / n), the batch-statistics gradient torch computes. Written as
 * k * (dy - dbeta/n) - xhat * (k * dgamma/n) so that the per-channel factors are folded on [1,C,1,1] tensors and
 * only four elementwise ops (and the two sums) touch [N,C,H,W] data: the BN backward is memory-bound. xhat is
 * read as centered * invStd, with invStd folded into those factors (the forward never writes xhat out).
 */
export function batchNormBackward(
  e: Emitter,
  s: BatchNormSaved,
  dy: Value,
  requiresGrad: Set<Value>,
): [Value, Value][] {
  const out: [Value, Value][] = [];
  const dBetaKeep = e.reduceSum(dy, s.axes, true);
  const dGammaKeep = e.mul(e.reduceSum(e.mul(dy, s.centered), s.axes, true), s.invStd);
  const c = s.channelShape[1]!;
  if (requiresGrad.has(s.beta)) out.push([s.beta, e.reshape(dBetaKeep, [c])]);
  if (requiresGrad.has(s.gamma)) out.push([s.gamma, e.reshape(dGammaKeep, [c])]);
  if (requiresGrad.has(s.x)) {
    const k = e.reshape(s.scaleFactor, [c]);
    const dyShift = e.reshape(e.mul(s.scaleFactor, e.scale(dBetaKeep, -1 / s.count)), [c]);
    // xhat * f = centered * (f * invStd)
    const centeredFactor = e.reshape(
      e.mul(e.mul(s.scaleFactor, e.scale(dGammaKeep, -1 / s.count)), s.invStd),
      [c],
    );
    const zeros = e.floats(new Float32Array(c), [c], 'zeros');
    out.push([s.x, e.add(affine(e, dy, k, dyShift, c), affine(e, s.centered, centeredFactor, zeros, c))]);
  }
  return out;
}
