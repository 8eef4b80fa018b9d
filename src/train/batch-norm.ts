import type { Value } from '../ir/graph.js';
import type { Emitter } from './emitter.js';

/** Batch moments of `x` over `axes` (kept as size-1 dims), as train-mode BatchNormalization computes them. */
export interface BatchMoments {
  mean: Value;
  centered: Value;
  /** The biased variance (divided by the count), which train-mode BN normalises with. */
  biasedVar: Value;
}

/**
 * The one expansion of train-mode BatchNormalization statistics in standard ops, shared by the training step
 * (src/train/step-graph.ts) and the statistics graph of adaptive BN (src/passes/bn-stats-graph.ts), and valid
 * in the emitter's opset.
 */
export function emitBatchMoments(e: Emitter, x: Value, axes: number[]): BatchMoments {
  const mean = e.reduceMean(x, axes, true);
  const centered = e.sub(x, mean);
  const biasedVar = e.reduceMean(e.mul(centered, centered), axes, true);
  return { mean, centered, biasedVar };
}
