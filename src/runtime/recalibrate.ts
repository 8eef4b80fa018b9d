import * as ort from 'onnxruntime-node';
import { batches } from '../data/batches.js';
import type { AnyDataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { shuffledIndices } from '../data/subset.js';
import { firstLine } from '../data/error-text.js';
import { UserError } from '../errors.js';
import { DataType, Tensor, Value, serializeModel, type Model } from '../ir/index.js';
import { batchNormStatsGraph, findBatchNormLayers, type BatchNormLayer } from '../passes/bn-stats-graph.js';
import { checkInputShape, createSession, feedsOf, type RuntimeOptions } from './session.js';

export interface RecalibrateOptions {
  spec: PreprocessSpec;
  /** K: how many batches of training images to average over. */
  batches: number;
  /** Default 128. */
  batchSize?: number;
  /** Chooses which K x batchSize images are used (a seeded random sample, in random order). Default 0. */
  seed?: number;
  /**
   * Apply the spec's training augmentation (random padded crop, flip), as the training loader would. Default
   * true: the running statistics a network was trained with include the padding, and estimating them without
   * it costs accuracy (ResNet-56: 81.4% instead of 84.9%, see docs/runtime.md).
   */
  augment?: boolean;
  /**
   * Estimate each channel's variance over all the images together (the mean of the batches' variances plus
   * the variance of their means) instead of averaging the batches' own variances. Small batches need it: with a
   * batch of one image, a 2x2 feature map's own variance says little about the data's (a static detector export
   * fixes the batch at 1). Default false, the averaging PyTorch's train-mode BN does.
   */
  pooledVariance?: boolean;
  runtime?: RuntimeOptions;
  onProgress?: (done: number, total: number) => void;
}

export interface RecalibrationResult {
  /** BatchNormalization layers whose running statistics were replaced. */
  layers: number;
  images: number;
  batches: number;
  seconds: number;
}

/**
 * Adaptive BN: re-estimates every BatchNormalization's running mean and variance of `model` (in place) from K
 * batches of training images, run as in train mode (each BN normalises with its batch's statistics). The
 * estimate is the plain average over batches, as torch's momentum=None (cumulative average) computes it:
 * running_mean = mean of the per-batch means; running_var = mean of the per-batch *unbiased* variances
 * (n/(n−1) with n = N·H·W), because that is what torch stores in running_var.
 */
export async function recalibrateBatchNorm(
  model: Model,
  dataset: AnyDataset,
  options: RecalibrateOptions,
): Promise<RecalibrationResult> {
  const source = model.sourcePath ?? '<in-memory model>';
  const batchSize = options.batchSize ?? 128;
  if (!(Number.isInteger(options.batches) && options.batches > 0)) {
    throw new UserError(`the number of batches must be a positive integer, not ${options.batches}`);
  }
  const layers = findBatchNormLayers(model, source);
  const { model: statsModel, outputs: statsOutputs } = batchNormStatsGraph.run(model, { source });
  const session = await createSession(serializeModel(statsModel), options.runtime);

  const started = performance.now();
  const indices = shuffledIndices(dataset.length, options.seed ?? 0).subarray(0, options.batches * batchSize);
  const sums = layers.map((l) => ({
    mean: new Float64Array(l.channels),
    variance: new Float64Array(l.channels),
    meanSquare: new Float64Array(l.channels),
    count: 0,
  }));
  const fetches = statsOutputs.flatMap((o) => [o.mean, o.variance, o.shape]);
  let batchCount = 0;
  let images = 0;
  try {
    const stream = batches(dataset, {
      spec: options.spec,
      batchSize,
      indices,
      ...(options.augment !== false && { augmentSeed: options.seed ?? 0 }),
    });
    for await (const batch of stream) {
      if (batchCount === 0 && !batch.feeds)
        checkInputShape(session, batch.shape, `the data (${dataset.describe(batch.indices[0]!)})`);
      const feeds = feedsOf(batch, session.inputName);
      let results: ort.InferenceSession.ReturnType;
      try {
        results = await session.session.run(feeds, fetches);
      } catch (e) {
        throw new UserError(`onnxruntime failed on the statistics graph (${firstLine(e)})`, source);
      }
      statsOutputs.forEach((o, i) => {
        const mean = results[o.mean]!.data as Float32Array;
        const variance = results[o.variance]!.data as Float32Array;
        const [n, , length] = Array.from(results[o.shape]!.data as BigInt64Array, Number) as [
          number,
          number,
          number,
        ];
        const count = n * length;
        const pooled = options.pooledVariance === true;
        const unbiased = count > 1 && !pooled ? count / (count - 1) : 1;
        sums[i]!.count += count;
        for (let c = 0; c < mean.length; c++) {
          sums[i]!.mean[c] += mean[c]!;
          sums[i]!.variance[c] += variance[c]! * unbiased;
          sums[i]!.meanSquare[c] += mean[c]! * mean[c]!;
        }
      });
      batchCount++;
      images += batch.n;
      options.onProgress?.(batchCount, Math.ceil(indices.length / batchSize));
    }
  } finally {
    await session.release();
  }

  layers.forEach((layer, i) => {
    const s = sums[i]!;
    writeStatistic(model, layer, 3, s.mean, batchCount);
    writeStatistic(
      model,
      layer,
      4,
      options.pooledVariance ? pooledVariance(s, batchCount) : s.variance,
      batchCount,
    );
  });
  return {
    layers: layers.length,
    images,
    batches: batchCount,
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * The sum (over batches, so writeStatistic's division gives the value) of the variance over all images: by the
 * law of total variance, the mean of the batches' variances plus the variance of their means (equal-sized
 * batches), with Bessel's correction over every value seen.
 */
function pooledVariance(
  s: { mean: Float64Array; variance: Float64Array; meanSquare: Float64Array; count: number },
  batches: number,
): Float64Array {
  const unbiased = s.count > 1 ? s.count / (s.count - 1) : 1;
  return s.variance.map((v, c) => {
    const m = s.mean[c]! / batches;
    const within = v / batches;
    const between = s.meanSquare[c]! / batches - m * m;
    return (within + Math.max(0, between)) * unbiased * batches;
  });
}

/** Stores sum/count into the BN's input `slot`; a tensor shared with another node gets a private copy first. */
function writeStatistic(
  model: Model,
  layer: BatchNormLayer,
  slot: 3 | 4,
  sum: Float64Array,
  count: number,
): void {
  const values = Float32Array.from(sum, (s) => s / count);
  const current = layer.node.input(slot);
  if (current.uses.length === 1) {
    current.initializer!.setData(values);
    return;
  }
  const graph = model.graph;
  const copy = graph.addInitializer(
    new Value(graph.uniqueName(current.name), current.type),
    Tensor.fromArray(DataType.FLOAT, current.initializer!.dims, values),
  );
  layer.node.setInput(slot, copy);
}
