import type { AnyDataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { mixSeed, mulberry32, shuffle } from '../data/prng.js';
import { isTokenSet } from '../data/tokens.js';
import type { Model } from '../ir/index.js';
import { FidelityJudge, type RunOutputs } from '../runtime/fidelity.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { distillFromOriginal, type OutputKind } from '../train/distill.js';
import type { StepProgress } from '../train/loop.js';
import type { SgdOptions } from '../train/optimizer.js';

/**
 * The prune pipeline on images without labels (docs/pruning.md, "Without labels"). Every stage reads images
 * only: BN recalibration and compensation already did; candidates are ranked, and each stage reported, by
 * fidelity to the original: R² = 1 - (squared error against the original's outputs) / (their spread), averaged
 * over the outputs, which works for logits, boxes, masks and maps alike. Recovery is distillation from the
 * original (src/train/distill.ts).
 */

/** The score the pipeline ranks by: `top1` holds the measure (top-1, or R² here), `loss` the error. */
export interface StageScore {
  top1: number;
  loss: number;
  images: number;
}

/** A seeded split of n unlabelled images: `holdout` to score on, `rest` to calibrate and train on. */
export function randomSplit(
  n: number,
  holdout: number,
  seed: number,
): { holdout: Int32Array; rest: Int32Array } {
  const order = Int32Array.from({ length: n }, (_, i) => i);
  shuffle(order, mulberry32(mixSeed(seed, 0x5eed)));
  return { holdout: order.slice(0, holdout).sort(), rest: order.slice(holdout).sort() };
}

/** Fidelity of candidates to the original on fixed images; the original runs once per image set. */
export class FidelityScorer {
  private readonly judges = new Map<ArrayLike<number> | undefined, FidelityJudge>();

  constructor(
    private readonly original: Uint8Array,
    private readonly spec: PreprocessSpec,
    private readonly runtime: RuntimeOptions,
    private readonly batchSize = 32,
  ) {}

  async score(
    candidate: Uint8Array,
    dataset: AnyDataset,
    indices: ArrayLike<number> | undefined,
  ): Promise<StageScore> {
    return (await this.scoreWithOutputs(candidate, dataset, indices)).score;
  }

  /** The score, and the candidate's outputs on the images (a task figure can be read off the same run). */
  async scoreWithOutputs(
    candidate: Uint8Array,
    dataset: AnyDataset,
    indices: ArrayLike<number> | undefined,
  ): Promise<{ score: StageScore; outputs: RunOutputs }> {
    let judge = this.judges.get(indices);
    if (!judge) {
      judge = new FidelityJudge(this.original, dataset, {
        spec: this.spec,
        runtime: this.runtime,
        batchSize: this.batchSize,
        ...(indices && { indices }),
      });
      this.judges.set(indices, judge);
    }
    const { fidelity: f, outputs } = await judge.scoreWithOutputs(candidate);
    return { score: { top1: 1 - f.error, loss: f.error, images: f.images }, outputs };
  }
}

export interface DistillStageOptions {
  epochs: number;
  lr: number;
  batchSize: number;
  limit?: number;
  sgd?: SgdOptions;
  outputKinds?: readonly OutputKind[];
  spec: PreprocessSpec;
  seed: number;
  runtime: RuntimeOptions;
  inputShapes?: Readonly<Record<string, readonly number[]>>;
  onStep?: (p: StepProgress) => void;
}

/** Label-free recovery: `start` (the pruned model) learns the original's outputs on the training images. */
export async function distillStage(
  start: Model,
  original: Model,
  dataset: AnyDataset,
  indices: Int32Array,
  o: DistillStageOptions,
): Promise<Model> {
  const subset = indices.length === dataset.length ? dataset : subsetOf(dataset, indices);
  const { model } = await distillFromOriginal(start, original, subset, {
    epochs: o.epochs,
    lr: o.lr,
    batchSize: o.batchSize,
    spec: o.spec,
    seed: o.seed,
    ...(o.limit !== undefined && { limit: o.limit }),
    ...(o.sgd && { sgd: o.sgd }),
    ...(o.outputKinds && { outputKinds: o.outputKinds }),
    ...(o.inputShapes && { inputShapes: o.inputShapes }),
    ...(o.runtime.device && { device: o.runtime.device }),
    ...(o.runtime.threads !== undefined && { threads: o.runtime.threads }),
    ...(o.onStep && { onStep: o.onStep }),
  });
  return model;
}

/** The images at `indices` as a data set of their own (the held-out images are never trained on). */
function subsetOf(dataset: AnyDataset, indices: Int32Array): AnyDataset {
  const view = {
    describe: (i: number) => dataset.describe(indices[i]!),
    load: (i: number, spec: PreprocessSpec) => dataset.load(indices[i]!, spec),
    length: indices.length,
    ...(isTokenSet(dataset) && {
      feeds: (ix: ArrayLike<number>) => dataset.feeds(Int32Array.from(ix, (i) => indices[i]!)),
      classLabels: dataset.classLabels && Int32Array.from(indices, (i) => dataset.classLabels![i]!),
    }),
  };
  return dataset.labelled === false
    ? { ...dataset, ...view }
    : { ...dataset, ...view, labels: Int32Array.from(indices, (i) => dataset.labels[i]!) };
}
