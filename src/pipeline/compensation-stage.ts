import { batches } from '../data/batches.js';
import type { AnyDataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { mulberry32, shuffle } from '../data/prng.js';
import { decodeModel, serializeModel, type Model } from '../ir/index.js';
import { compensateModel, type CompensationTarget, type InputBatch } from '../prune/compensate.js';
import type { CompensationSummary } from '../report/types.js';
import { recalibrateBatchNorm } from '../runtime/recalibrate.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { ProxyScore } from './scoring.js';

export interface CompensationStageOptions {
  dataset: AnyDataset;
  spec: PreprocessSpec;
  /** Training images the fit may use (the calibration split is excluded: it judges the result). */
  pool: Int32Array;
  images: number;
  seed: number;
  runtime: RuntimeOptions;
  /** BN recalibration after the fit (undefined: the model has no BN). */
  recalibration?: { batches: number; batchSize: number; pooledVariance?: boolean };
  /** Images per batch the model is run on (default 100; a model with a fixed batch dim takes only that). */
  batchSize?: number;
  /** Proxy score of serialized model bytes on the calibration split. */
  score: (bytes: Uint8Array) => Promise<ProxyScore>;
  log: (line: string) => void;
}

/**
 * The pipeline's compensation step for the chosen candidate: re-fit the consumers of pruned channels on
 * `images` training images (the last fifth held out to accept or reject each layer's fit), recalibrate BN,
 * score on the calibration split. The caller keeps the result only when its proxy loss is lower.
 */
export async function runCompensation(
  pruned: Uint8Array,
  original: Uint8Array,
  targets: readonly CompensationTarget[],
  options: CompensationStageOptions,
): Promise<{
  model: Model;
  bytes: Uint8Array;
  score: ProxyScore;
  summary: Omit<CompensationSummary, 'used' | 'proxyLossBefore'>;
}> {
  const started = performance.now();
  const chosen = shuffle(Int32Array.from(options.pool), mulberry32(options.seed ^ 0x5eed)).subarray(
    0,
    Math.min(options.images, options.pool.length),
  );
  const loaded: InputBatch[] = [];
  const batchSize = options.batchSize ?? 100;
  for await (const b of batches(options.dataset, { spec: options.spec, batchSize, indices: chosen }))
    loaded.push(
      b.feeds
        ? { data: b.images, shape: Object.values(b.feeds)[0]!.dims.map(Number), feeds: b.feeds }
        : { data: b.images, shape: [...b.shape] },
    );
  const heldCount = Math.max(1, Math.round(loaded.length / 5));
  const data = { fit: loaded.slice(0, loaded.length - heldCount), heldOut: loaded.slice(-heldCount) };
  if (data.fit.length === 0) data.fit = data.heldOut;
  const { model, report } = await compensateModel(decodeModel(pruned), original, targets, data, {
    seed: options.seed,
    runtime: options.runtime,
    log: options.log,
  });
  const keptFits = report.layers.filter((l) => l.kept).length;
  options.log(
    `  compensation: ${keptFits} of ${report.layers.length} layer fits kept, ${report.skipped.length} skipped, ${report.seconds.toFixed(1)} s`,
  );
  if (options.recalibration)
    await recalibrateBatchNorm(model, options.dataset, {
      spec: options.spec,
      batches: options.recalibration.batches,
      batchSize: options.recalibration.batchSize,
      pooledVariance: options.recalibration.pooledVariance === true,
      seed: options.seed,
      runtime: options.runtime,
    });
  const bytes = serializeModel(model);
  const score = await options.score(bytes);
  return {
    model,
    bytes,
    score,
    summary: {
      seconds: (performance.now() - started) / 1000,
      images: chosen.length,
      proxyLossAfter: score.loss,
      layers: report.layers,
      skipped: report.skipped,
    },
  };
}
