import { batches } from '../data/batches.js';
import type { Dataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { UserError } from '../errors.js';
import { checkInputShape, createSession, type ModelSession, type RuntimeOptions } from './session.js';

export interface EvaluateOptions {
  spec: PreprocessSpec;
  /** Default 256. */
  batchSize?: number;
  /** Evaluate only these samples (e.g. a balanced subset). */
  indices?: ArrayLike<number>;
  /** Used when `model` is a path or bytes. */
  runtime?: RuntimeOptions;
  /** The input shape the caller expects (`--input-shape`): the data must give it, past the batch. */
  inputShape?: readonly number[];
  /** Called after every batch. */
  onProgress?: (done: number, total: number, correctTop1: number) => void;
}

export interface EvalResult {
  /** Fractions of `n` (0..1). */
  top1: number;
  top5: number;
  /**
   * Mean softmax cross-entropy of the scores (what the adaptive step breaks top-1 ties with); of rows that are
   * probabilities already (a final Softmax), -log p of the label.
   */
  loss: number;
  correctTop1: number;
  correctTop5: number;
  n: number;
  /** The k of "top-5": 5, or the class count when there are fewer classes. */
  topK: number;
  seconds: number;
  imagesPerSecond: number;
  model: string;
  device: 'cpu' | 'cuda';
  batchSize: number;
}

/** Top-1/top-5 accuracy of a classifier whose first output is [N, classes] scores. */
export async function evaluate(
  model: ModelSession | string | Uint8Array,
  dataset: Dataset,
  options: EvaluateOptions,
): Promise<EvalResult> {
  const owned = typeof model === 'string' || model instanceof Uint8Array;
  const session = owned ? await createSession(model, options.runtime) : model;
  try {
    return await evaluateSession(session, dataset, options);
  } finally {
    if (owned) await session.release();
  }
}

async function evaluateSession(
  session: ModelSession,
  dataset: Dataset,
  options: EvaluateOptions,
): Promise<EvalResult> {
  const batchSize = options.batchSize ?? 256;
  const total = options.indices?.length ?? dataset.length;
  const topK = Math.min(5, dataset.classNames.length);
  let correctTop1 = 0;
  let correctTop5 = 0;
  let lossSum = 0;
  let done = 0;
  const started = performance.now();
  for await (const batch of batches(dataset, {
    spec: options.spec,
    batchSize,
    ...(options.indices && { indices: options.indices }),
  })) {
    if (done === 0) {
      checkInputShape(session, batch.shape, `the data (${dataset.describe(batch.indices[0]!)})`);
      const want = options.inputShape;
      if (want && (want.length !== batch.shape.length || want.some((d, i) => i > 0 && d !== batch.shape[i])))
        throw new UserError(
          `--input-shape is ${want.join('x')} but the data gives ${batch.shape.slice(1).join('x')} after the batch`,
          dataset.describe(batch.indices[0]!),
        );
    }
    const scores = await session.run(batch.images, batch.shape);
    const classes = scores.length / batch.n;
    if (done === 0 && classes < dataset.classNames.length) {
      throw new UserError(
        `outputs ${classes} scores per image but the data has ${dataset.classNames.length} classes`,
        session.source,
      );
    }
    for (let s = 0; s < batch.n; s++) {
      const rank = rankOfLabel(scores, s * classes, classes, batch.labels[s]!);
      if (rank < 1) correctTop1++;
      if (rank < topK) correctTop5++;
      lossSum += crossEntropy(scores, s * classes, classes, batch.labels[s]!);
    }
    done += batch.n;
    options.onProgress?.(done, total, correctTop1);
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    top1: done ? correctTop1 / done : 0,
    top5: done ? correctTop5 / done : 0,
    loss: done ? lossSum / done : 0,
    correctTop1,
    correctTop5,
    n: done,
    topK,
    seconds,
    imagesPerSecond: done / seconds,
    model: session.source,
    device: session.device,
    batchSize,
  };
}

/** −log softmax(scores)[label], computed stably (shifted by the row's maximum). */
function crossEntropy(scores: Float32Array, offset: number, classes: number, label: number): number {
  if (isProbabilityRow(scores, offset, classes)) return -Math.log(Math.max(scores[offset + label]!, 1e-30));
  let max = -Infinity;
  for (let j = 0; j < classes; j++) max = Math.max(max, scores[offset + j]!);
  let sum = 0;
  for (let j = 0; j < classes; j++) sum += Math.exp(scores[offset + j]! - max);
  return Math.log(sum) - (scores[offset + label]! - max);
}

/**
 * Whether a row is probabilities (a model ending in Softmax): all values >= 0 and summing to 1 within 1e-3. Its
 * cross-entropy is -log p, not that of a second softmax over it.
 */
function isProbabilityRow(scores: Float32Array, offset: number, classes: number): boolean {
  let sum = 0;
  for (let j = 0; j < classes; j++) {
    const v = scores[offset + j]!;
    if (!(v >= 0)) return false;
    sum += v;
  }
  return Math.abs(sum - 1) < 1e-3;
}

/**
 * The label's position when scores are sorted descending, breaking ties by class index as argmax/topk do
 * (the first of equal scores wins). A NaN score never counts as correct.
 */
function rankOfLabel(scores: Float32Array, offset: number, classes: number, label: number): number {
  const target = scores[offset + label]!;
  if (Number.isNaN(target)) return classes;
  let rank = 0;
  for (let j = 0; j < classes; j++) {
    const v = scores[offset + j]!;
    if (v > target || (v === target && j < label)) rank++;
  }
  return rank;
}
