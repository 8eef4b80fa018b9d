import { batchNormReport } from '../analysis/bn-report.js';
import { hasLabels, requireLabels, type AnyDataset } from '../data/dataset.js';
import { mixSeed, mulberry32, shuffle } from '../data/prng.js';
import { isTokenSet } from '../data/tokens.js';
import { balancedSubset, holdoutSplit } from '../data/subset.js';
import { BudgetUnreachableError, UserError } from '../errors.js';
import { decodeModel, releaseLoadedFile, serializeModel, type Model } from '../ir/index.js';
import { cleanupPipeline } from '../passes/index.js';
import { PassManager } from '../passes/pass-manager.js';
import {
  CRITERIA,
  analyzeForPruning,
  applyPlan,
  budgetFloorOf,
  planPrune,
  taylorScores,
  toolVersion,
  type CompensationTarget,
  type Criterion,
  type Plan,
  type PlannedPrune,
  type PruneAnalysis,
  type PruneOptions,
  type WidthSource,
} from '../prune/index.js';
import { idBounds } from '../shapes/probe.js';
import { validateModel } from '../runtime/validate.js';
import type { PruneReport as CoreReport } from '../prune/index.js';
import {
  RUN_PIXELS,
  DEFAULT_PRUNE_LR,
  DEFAULT_PRUNE_LR_LAYERNORM,
  DEFAULT_DISTILL_LR,
  DEFAULT_DISTILL_LR_BATCHED,
  DEFAULT_DISTILL_LR_TOKENS,
  DEFAULT_ROUND_TO,
  DEFAULT_WIDE_ROUNDING,
  DEFAULT_PRUNE_BATCH,
  DEFAULT_DISTILL_BATCH,
  DEFAULT_PRUNE_AUGMENT,
  DEFAULT_PRUNE_NESTEROV,
  DEFAULT_FINETUNE_FROM,
  DEFAULT_DISTILL,
  FINER_ROUNDINGS,
  DEFAULT_WIDTH_TRIALS,
  DEFAULT_CALIBRATION_IMAGES,
  DEFAULT_CALIBRATION_IMAGES_UNLABELLED,
  WIDTH_JITTER,
  SEARCHED_WIDTHS,
} from './defaults.js';
import type {
  AccuracyStage,
  CompensationSummary,
  CriterionRow,
  PruneReport,
  StageTaskMetrics,
} from '../report/types.js';
import { recalibrateBatchNorm } from '../runtime/recalibrate.js';
import { evaluate } from '../runtime/evaluate.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { finetune } from '../train/loop.js';
import { DEFAULT_DISTILL_GATE } from '../train/step-graph.js';
import { runCompensation } from './compensation-stage.js';
import { FidelityScorer, distillStage, randomSplit } from './label-free.js';
import { candidateFigure, labelledValue, StageTaskScorer } from './stage-task.js';
import { FROZEN_BN_BELOW } from '../train/distill.js';
import { distilWithRetry } from './distil-retry.js';
import {
  measureLatencies,
  searchLatencyBudget,
  staticLatencyCost,
  type LatencySearchStep,
} from './latency.js';
import { ModuleNames } from '../report/module-names.js';
import type { AdaPruneOptions, AdaPruneResult, DataOptions } from './options.js';

// The defaults and their reasons live in defaults.ts; importers of the pipeline keep finding them here.
export * from './defaults.js';
// So do the options and the result (options.ts).
export * from './options.js';

/** Top-1 and mean cross-entropy on fixed samples: what the stages report and the candidates are ranked by. */
interface ProxyScore {
  top1: number;
  loss: number;
  images: number;
  /** `--task` with labels on the training images: the labelled task figure (-Infinity where undefined). */
  task?: number;
}

/**
 * Candidates best first: higher top-1, then (on a small calibration split, ties are common) lower loss; under
 * `--task` with labels on the training images, the labelled task figure first.
 */
function rankCandidates<T extends { score: ProxyScore }>(candidates: T[]): T[] {
  const task = (c: T): number => c.score.task ?? 0;
  return [...candidates].sort(
    (a, b) => task(b) - task(a) || b.score.top1 - a.score.top1 || a.score.loss - b.score.loss,
  );
}

/** How a candidate's widths were made: a source, the rounding unit, and for the refinement a perturbation. */
interface WidthConfig {
  source: WidthSource;
  roundTo: number;
  /** Seed index of a perturbed neighbour of the source's widths (jitterScores). */
  trial?: number;
}

/** The best-ranked candidate of a width or criterion comparison. */
interface Candidate {
  criterion: Criterion;
  widths: WidthConfig;
  /** The widths as the report's candidate table shows them. */
  label: string;
  /** Serialized as it was before recalibration, for the report's "pruned" accuracy. */
  prunedBytes: Uint8Array;
  recalibrated: Model;
  recalibratedBytes: Uint8Array;
  plan: Plan;
  core: CoreReport;
  score: ProxyScore;
  targets: CompensationTarget[];
}

/** The chosen model after the data stages, with what the report says about them. */
interface Outcome {
  best: Candidate;
  result: Model;
  compensation?: CompensationSummary;
  compensatedBytes?: Uint8Array;
  originalMs?: number;
  prunedMs?: number;
}

/**
 * The AdaPruner method end to end: cleanup, channel groups and BN block scores, bisection to the budget, one
 * candidate per inheritance criterion, BN recalibration of each, a proxy score on held-out training images,
 * the best kept, fine-tuning, validation. Without data it is the data-free prune and says what it skipped.
 */
export async function adaPrune(input: Model, options: AdaPruneOptions): Promise<AdaPruneResult> {
  return new AdaPruneRun(input, options).run();
}

/** One run of the pipeline: the state its stages share, and one method per stage. */
class AdaPruneRun {
  private readonly pm: PassManager;
  private readonly log: (line: string) => void;
  private readonly stages: { name: string; seconds: number }[] = [];
  private readonly skipped: string[] = [];
  private readonly notes: string[] = [];
  // Every candidate runs the same width search, so the same notes would repeat once per criterion.
  private readonly warned = new Set<string>();
  private readonly accuracy: AccuracyStage[] = [];
  private readonly data: DataOptions | undefined;
  private readonly seed: number;
  private readonly runtime: RuntimeOptions;
  private originalBytes: Uint8Array | undefined;
  private split: ReturnType<typeof holdoutSplit> | undefined;
  private evalSet: AnyDataset | undefined;
  /** Without labels: scores stages by fidelity to the original instead of top-1. */
  private fidelity: FidelityScorer | undefined;
  /** `--task`: the task's metric of every stage. */
  private taskScorer: StageTaskScorer | undefined;
  /** `--task` with labels on the training images: the labelled figure of each candidate on the held-out ones. */
  private candidateTask: StageTaskScorer | undefined;
  private evalIndices: ArrayLike<number> | undefined;
  private analysed: PruneAnalysis | undefined;
  private baseOptions!: PruneOptions;
  private budget: Pick<PruneOptions, 'flops' | 'params'>;
  private latencySearch: LatencySearchStep[] | undefined;
  private baselineMs: number | undefined;
  private originalCost: number | undefined;
  private hasBatchNorm = false;
  private kept: PruneReport['kept'];

  constructor(
    private readonly input: Model,
    private readonly options: AdaPruneOptions,
  ) {
    this.pm = options.passManager ?? new PassManager();
    this.log = options.log ?? (() => undefined);
    this.data = options.data;
    this.seed = options.seed ?? 0;
    this.runtime = options.runtime ?? {};
    this.budget = { flops: options.flops, params: options.params };
  }

  async run(): Promise<AdaPruneResult> {
    const { options, data } = this;
    const criterionOption = options.criterion ?? (data ? 'auto' : 'l1');
    if (criterionOption === 'auto' && !data)
      throw new UserError('--criterion auto compares candidates on data: give --data, or name a criterion');
    if (options.latency !== undefined && (options.flops !== undefined || options.params !== undefined))
      throw new UserError('give one budget: --flops, --params or --latency');
    await this.stage('cleanup', () => cleanupPipeline(this.pm, this.input));
    await this.prepareData();
    // Width sources: one, or (`search`, the default with data) each tried with one criterion and the best kept.
    const widthOption = options.widths ?? (options.uniform ? 'uniform' : data ? 'search' : 'structural');
    if (widthOption === 'search' && !data)
      throw new UserError('--widths search compares candidates on data: give --data, or name a width source');
    this.baseOptions = {
      widths: widthOption === 'search' ? 'structural' : widthOption,
      uniform: options.uniform,
      // Multiples of 8 by default: off them, onnxruntime's blocked (NCHWc) convolution kernels fall back to
      // slower paths and a model with half the MACs can run slower than the original (docs/results.md).
      roundTo: options.roundTo ?? DEFAULT_ROUND_TO,
      ...(options.roundTo === undefined && { wideRounding: DEFAULT_WIDE_ROUNDING }),
      // Downstream by default: re-fitting the later layers on their drifted inputs too lifted ResNet-56 at 50%
      // MACs from 76.4% (consumers only) to 78.2% compensated, for about twice the compensation time.
      compensationScope: options.compensationScope ?? 'downstream',
      minChannels: options.minChannels,
      minFraction: options.minFraction,
      torchCompatible: options.torchCompatible,
      seed: this.seed,
      inputShapes: options.inputShapes,
      passManager: this.pm,
      warn: (line) => this.warn(line),
    };
    if (options.latency !== undefined) await this.searchLatency(options.latency);
    this.hasBatchNorm = this.input.graph.nodes.some((n) => n.opType === 'BatchNormalization');
    if (data && !this.hasBatchNorm) this.skipped.push(`BN recalibration (${noRecalibrationWhy(this.input)})`);
    // Taylor scores need a loss, and the loss labels: on unlabelled images `auto` compares the others. Without BN
    // (folded at export, a transformer) they come from the producers' weight gradients (src/prune/taylor.ts).
    const criteria: Criterion[] =
      criterionOption === 'auto'
        ? [...(options.candidates ?? CRITERIA)].filter((c) => c !== 'taylor' || this.labelled)
        : [criterionOption];
    if (criteria.includes('taylor') && !data)
      throw new UserError('--criterion taylor measures loss gradients on data: give --data');
    if (criteria.includes('taylor') && !this.labelled)
      throw new UserError(
        '--criterion taylor measures loss gradients on labels; this data set has no labels',
      );
    const { best, rows } = await this.chooseCandidate(criteria, widthOption);
    let outcome = await this.compensate(best);
    outcome = await this.dataStages(outcome);
    outcome = await this.measure(outcome);
    outcome = await this.coarsen(outcome);
    return this.finish(outcome, rows);
  }

  /** The cleaned original, serialized when first needed (data, latency): a data-free prune never holds it. */
  private get original(): Uint8Array {
    return (this.originalBytes ??= serializeModel(this.input));
  }

  /**
   * The batch size for running the model: `wanted`, or the model's own when its input fixes the batch dim (a
   * static export, such as ultralytics' default, bakes batch 1 into its reshapes).
   */
  private batchOf(wanted: number): number {
    const dim = this.input.graph.inputs.find((v) => !v.isInitializer)?.shape?.[0];
    return typeof dim === 'number' && dim > 0 ? dim : wanted;
  }

  /**
   * Images per inference run (scoring, BN statistics, compensation's activations): `wanted` up to 224x224
   * inputs, proportionally fewer above, so that one run's activations stay about as large. onnxruntime's arena
   * keeps its peak: a 640x640 text detector's prune peaked at 19 GB with 64-image recalibration batches and
   * 100-image compensation batches.
   */
  private runBatchOf(wanted: number): number {
    const fixed = this.batchOf(wanted);
    const input = this.input.graph.inputs.find((v) => !v.isInitializer);
    const dims = (input && this.options.inputShapes?.[input.name]) ?? input?.shape;
    const [h, w] = [dims?.[2], dims?.[3]];
    if (fixed !== wanted || dims?.length !== 4 || typeof h !== 'number' || typeof w !== 'number')
      return fixed;
    return Math.max(1, Math.min(wanted, Math.floor((wanted * RUN_PIXELS) / (h * w))));
  }

  /** Whether the data has labels: top-1 and fine-tuning, or fidelity and distillation (label-free.ts). */
  private get labelled(): boolean {
    return this.data !== undefined && hasLabels(this.data.train);
  }

  private async stage<R>(name: string, fn: () => Promise<R> | R): Promise<R> {
    this.log(`${name}...`);
    const t = performance.now();
    const r = await fn();
    this.stages.push({ name, seconds: (performance.now() - t) / 1000 });
    return r;
  }

  private warn(line: string): void {
    if (this.warned.has(line)) return;
    this.warned.add(line);
    this.options.warn?.(line);
  }

  /** A copy of the cleaned original (the teacher, the Taylor probe): the input itself is never changed. */
  private fresh(): Model {
    const m = this.input.clone();
    m.sourcePath = undefined;
    return m;
  }

  /**
   * A candidate's proxy score on the held-out training images and, under `--task`, its task figure, read off
   * the same run of the model where the images have no labels (R² and mAP from one pass: a yolov8n candidate
   * at 640 took two runs of about 15 s each).
   */
  private async candidateScore(bytes: Uint8Array): Promise<ProxyScore> {
    const train = this.data!.train;
    const holdout = this.split!.holdout;
    if (!this.candidateTask) return this.score(bytes, train, holdout);
    if (!this.fidelity)
      return {
        ...(await this.score(bytes, train, holdout)),
        task: candidateFigure(await this.candidateTask.measure(bytes)),
      };
    const { score, outputs } = await this.fidelity.scoreWithOutputs(bytes, train, holdout);
    return { ...score, task: candidateFigure(await this.candidateTask.measureOutputs(outputs)) };
  }

  private async score(
    bytes: Uint8Array,
    dataset: AnyDataset,
    indices: ArrayLike<number> | undefined,
  ): Promise<ProxyScore> {
    if (this.fidelity) return this.fidelity.score(bytes, dataset, indices);
    const r = await evaluate(bytes, requireLabels(dataset), {
      batchSize: this.batchOf(256),
      spec: this.data!.spec,
      runtime: this.runtime,
      ...(indices && { indices }),
    });
    return { top1: r.top1, loss: r.loss, images: r.n };
  }

  private record(stageName: AccuracyStage['stage'], s: ProxyScore, task?: StageTaskMetrics): void {
    this.accuracy.push({
      stage: stageName,
      top1: s.top1,
      loss: s.loss,
      images: s.images,
      ...(task && { task }),
    });
    const figures = [task?.labelled, task?.fidelity]
      .map(
        (f, i) =>
          f &&
          `, ${f.primary} ${f.value === null ? 'undefined' : f.value.toFixed(4)} ${i ? 'vs the original' : 'on labels'}`,
      )
      .join('');
    this.log(
      `  ${stageName}: ${this.fidelity ? 'fidelity R²' : 'top-1'} ${(100 * s.top1).toFixed(2)}% (${this.fidelity ? 'error' : 'loss'} ${s.loss.toFixed(4)}, ${s.images} images)${figures}`,
    );
  }

  /**
   * What the stages are ranked by (the model written): top-1 or R² as before; under `--task`, the task's figure:
   * against the labels where the evaluation images have them, else against the original's outputs (mAP of its
   * detections, mIoU of its masks), which follows what a user measures more closely than R² does (issue 29: on
   * the trained detector, stages of equal R² differed by 0.1 in mAP50-95). Undefined ranks lowest.
   */
  private stageValue(stage: AccuracyStage['stage']): number {
    const a = this.accuracy.find((x) => x.stage === stage)!;
    if (!this.taskScorer) return a.top1;
    return this.taskScorer.labelled ? labelledValue(a.task) : (a.task?.fidelity?.value ?? -Infinity);
  }

  /** The ranked figure as the notes print it. */
  private formatStageValue(v: number): string {
    if (!this.taskScorer) return `${(100 * v).toFixed(2)}%`;
    return Number.isFinite(v) ? v.toFixed(4) : 'undefined';
  }

  /** Why the best stage is the best, for the report. */
  private rankedBy(): string {
    const scorer = this.taskScorer;
    if (scorer) {
      const figure = (a: AccuracyStage) => (scorer.labelled ? a.task?.labelled : a.task?.fidelity);
      const primary = this.accuracy.map(figure).find((f) => f)?.primary ?? scorer.options.layout.task;
      return scorer.labelled
        ? `the best ${primary} on labels of the stages`
        : `the best ${primary} against the original's outputs of the stages`;
    }
    return `the best ${this.fidelity ? 'fidelity to the original' : 'top-1'} of the stages`;
  }

  /** Analyse once: every candidate (criteria, widths, latency steps, roundings) is a plan over it. */
  private async analysis(): Promise<PruneAnalysis> {
    return (this.analysed ??= await this.stage('analyse', () =>
      analyzeForPruning(this.input, {
        inputShapes: this.options.inputShapes,
        passManager: this.pm,
        warn: (line) => this.warn(line),
      }),
    ));
  }

  /** The shapes every candidate was analysed at: validation runs there too (a dynamic H/W has no other). */
  private validationDims(): Map<string, number[]> | undefined {
    return this.analysed && new Map(this.analysed.inputDims);
  }

  private latencyShape(): number[] {
    const { input, options } = this;
    const dims = input.graph.inputs[0]?.shape ?? [];
    return dims.map((d, i) =>
      i === 0
        ? (options.latencyBatch ?? 1)
        : typeof d === 'number'
          ? d
          : (options.inputShapes?.[input.graph.inputs[0]!.name]?.[i] ?? 1),
    );
  }

  private async timeIt(bytes: Uint8Array): Promise<number> {
    return (await this.timeSideBySide([bytes]))[0]!;
  }

  private timeSideBySide(models: Uint8Array[]): Promise<number[]> {
    return (
      this.options.timeModels?.(models) ??
      measureLatencies(models, {
        shape: this.latencyShape(),
        runtime: this.runtime,
        idBounds: idBounds(this.input),
      })
    );
  }

  /** The calibration split, where accuracy is reported, and the original's accuracy. */
  private async prepareData(): Promise<void> {
    const { data, seed } = this;
    if (!data) {
      this.skipped.push(
        'accuracy (no --data)',
        'adaptive criterion choice (no --data)',
        'BN recalibration (no --data)',
        'fine-tuning (no --data)',
      );
      return;
    }
    const train = data.train;
    if (!hasLabels(train) && train.length < 2)
      throw new UserError(
        `the data has ${train.length} image${train.length === 1 ? '' : 's'}: scoring without labels holds some out, so give at least 2`,
        train.path,
      );
    const holdout = Math.min(this.calibrationImages(data), Math.floor(train.length / 2));
    if (data.val && hasLabels(data.val) !== hasLabels(train))
      throw new UserError('--data and --val must both have labels or both be plain images', data.val.path);
    if (!hasLabels(train)) {
      this.fidelity = new FidelityScorer(this.original, data.spec, this.runtime, this.runBatchOf(32));
      this.notes.push(
        !data.task
          ? 'the data has no labels: stages are scored by fidelity to the original (R² of the outputs), and recovery distils from it'
          : data.task.labels
            ? `the pipeline reads the images only and recovery distils from the original; the ${data.task.layout.task} labels measure and rank the stages`
            : `the data has no labels: candidates and stages are ranked by the ${data.task.layout.task} figure against the original's outputs, and recovery distils from it`,
      );
    }
    this.split = hasLabels(train)
      ? holdoutSplit(train.labels, holdout, seed)
      : randomSplit(train.length, holdout, seed);
    this.evalSet = data.val ?? train;
    this.evalIndices = data.val
      ? data.valLimit !== undefined
        ? hasLabels(data.val)
          ? balancedSubset(data.val.labels, data.valLimit, seed)
          : randomSplit(data.val.length, Math.min(data.valLimit, data.val.length), seed).holdout
        : undefined
      : this.split.holdout;
    if (!data.val)
      this.notes.push('no --val given: accuracy is reported on the calibration split of the training data');
    if (data.task)
      this.taskScorer = new StageTaskScorer(
        this.original,
        this.evalSet,
        this.evalIndices,
        data.spec,
        this.runtime,
        this.runBatchOf(16),
        data.task,
      );
    if (data.task)
      this.candidateTask = new StageTaskScorer(
        this.original,
        train,
        this.split.holdout,
        data.spec,
        this.runtime,
        this.runBatchOf(16),
        { layout: data.task.layout, ...(data.task.trainLabels && { labels: data.task.trainLabels }) },
      );
    await this.evaluateStage('original', 'original', this.original);
  }

  /** A stage's model scored on the evaluation set (top-1 or R²), with its task metric under `--task`. */
  private async evaluateStage(
    stage: AccuracyStage['stage'],
    label: string,
    bytes: Uint8Array,
  ): Promise<void> {
    const scorer = this.taskScorer;
    if (scorer && this.fidelity) {
      // Without labels both figures come off one run of the model (the judge keeps its outputs anyway): a
      // 640x640 text detector's stages each took two runs of about 20 s over 100 images.
      const fidelity = this.fidelity;
      const { score, outputs } = await this.stage(`evaluate ${label}`, () =>
        fidelity.scoreWithOutputs(bytes, this.evalSet!, this.evalIndices),
      );
      const task = await this.stage(`${scorer.options.layout.task} metric of the ${label} model`, () =>
        scorer.measureOutputs(outputs),
      );
      return this.record(stage, score, task);
    }
    const s = await this.stage(`evaluate ${label}`, () => this.score(bytes, this.evalSet!, this.evalIndices));
    const task =
      scorer &&
      (await this.stage(`${scorer.options.layout.task} metric of the ${label} model`, () =>
        scorer.measure(bytes),
      ));
    this.record(stage, s, task);
  }

  /**
   * BN recalibration's batches: K x B as asked (default 20 x 64); a fixed-batch model averages over as many
   * images (at most 256) in batches of its own size, pooling the variance over images when they are few.
   */
  private recalibration(data: DataOptions): { batches: number; batchSize: number; pooledVariance: boolean } {
    const batches = data.recalibrationBatches ?? 20;
    const batchSize = data.recalibrationBatchSize ?? 64;
    // A batch size the user gave is kept; the default shrinks for large inputs, pooling the variance below 16.
    const fixed =
      data.recalibrationBatchSize === undefined ? this.runBatchOf(batchSize) : this.batchOf(batchSize);
    if (fixed === batchSize) return { batches, batchSize, pooledVariance: false };
    // A few images a batch: their own variances would understate the data's (recalibrate.ts pooledVariance).
    const pooledVariance = fixed < 16;
    // Without labels the images are typically large (detectors): half as many, as for the ranking above.
    const cap = hasLabels(data.train) ? 256 : 128;
    return {
      batches: Math.ceil(Math.min(batches * batchSize, cap) / fixed),
      batchSize: fixed,
      pooledVariance,
    };
  }

  /** `--calibration-images`, or its default: fewer without labels (DEFAULT_CALIBRATION_IMAGES_UNLABELLED). */
  private calibrationImages(data: DataOptions): number {
    return (
      data.calibrationImages ??
      (hasLabels(data.train) ? DEFAULT_CALIBRATION_IMAGES : DEFAULT_CALIBRATION_IMAGES_UNLABELLED)
    );
  }

  /** `--latency R`: bisect the MAC budget on measured latency; the budget becomes the MACs found. */
  private async searchLatency(target: number): Promise<void> {
    if (!(target > 0 && target <= 1)) throw new UserError(`--latency must be in (0, 1], got ${target}`);
    // The search starts from the smallest model the width limits allow (a little above, for rounding).
    const floor = budgetFloorOf(await this.analysis(), this.baseOptions);
    // The same lower bound as --flops: latency falls no faster than MACs (fixed costs stay), so a target below
    // the smallest model's MAC share cannot be met, and is refused before anything is timed.
    if (target < floor.flops)
      throw new BudgetUnreachableError(
        `--latency ${target} is not achievable: the smallest model the width limits allow keeps ${floor.flops.toFixed(4)} of the original MACs, and latency falls no faster than MACs (lower --min-channels/--min-fraction, or unfreeze groups)`,
      );
    const minFlops = Math.min(1, floor.flops * 1.02 + 1e-3);
    const baselineMs = await this.stage('measure latency', () => this.timeIt(this.original));
    this.baselineMs = baselineMs;
    const found = await this.stage('latency search', () =>
      searchLatencyBudget(
        target,
        baselineMs,
        async (flops) => {
          // Width-rounding notes of intermediate candidates are noise; the final prune reports its own.
          const a = await this.analysis();
          const planned = planPrune(a, { ...this.baseOptions, warn: undefined, flops, criterion: 'l1' });
          return serializeModel(applyPlan(a, planned, this.pm));
        },
        (bytes) => this.timeIt(bytes),
        { minFlops },
      ),
    );
    this.latencySearch = found.steps;
    for (const s of found.steps)
      this.log(
        `  MACs ${(100 * s.flops).toFixed(1)}% -> ${s.medianMs.toFixed(3)} ms (${(100 * s.ratio).toFixed(1)}% of the original)`,
      );
    if (found.medianMs > target * baselineMs)
      this.notes.push(
        `latency target ${target} not reached: the smallest candidate measured ${(found.medianMs / baselineMs).toFixed(3)} of the original`,
      );
    this.budget = { flops: found.flops };
  }

  /** First-order Taylor class scores on calibration batches, when `taylor` is among the criteria. */
  private async taylorClassScores(
    criteria: Criterion[],
  ): Promise<ReturnType<typeof taylorScores> | undefined> {
    const { data, split, seed } = this;
    if (!data || this.options.plan !== undefined || !criteria.includes('taylor')) return undefined;
    return this.stage('taylor scores', async () => {
      const images = Math.min(this.calibrationImages(data), split!.rest.length);
      const indices = shuffle(Int32Array.from(split!.rest), mulberry32(seed ^ 0x7a1)).subarray(0, images);
      return taylorScores(this.fresh(), (await this.analysis()).channels, requireLabels(data.train), {
        spec: data.spec,
        indices,
        runtime: this.runtime,
        warn: (line) => this.warn(line),
      });
    });
  }

  /** One candidate: plan, apply, recalibrate and score on the calibration split. */
  private async build(
    criterion: Criterion,
    widths: WidthConfig,
    classScores: Awaited<ReturnType<typeof taylorScores>> | undefined,
  ): Promise<Candidate> {
    // Analysed first, as a stage of its own: inside the candidate's stage its label stayed on for the rest of
    // the candidate's work (the progress notes said "analyse" for a minute of scoring).
    await this.analysis();
    const label = this.widthLabel(widths);
    // A given plan fixes widths and channels: its candidate is named after the plan, not a width source.
    const stageName =
      this.options.plan !== undefined ? 'candidate from the plan' : `candidate ${criterion}, ${label} widths`;
    return this.stage(stageName, async () => {
      const { data, options } = this;
      const a = await this.analysis();
      const planned = planPrune(a, {
        ...this.baseOptions,
        ...this.budget,
        widths: widths.source,
        roundTo: widths.roundTo,
        // The finer roundings the search tries are finer everywhere.
        wideRounding: widths.roundTo === this.baseOptions.roundTo ? this.baseOptions.wideRounding : undefined,
        ...(widths.trial !== undefined && {
          widthJitter: { seed: mixSeed(this.seed, widths.trial), sigma: WIDTH_JITTER },
        }),
        criterion,
        ...(criterion === 'taylor' && classScores && { classScores }),
        plan: options.plan,
        planSource: options.planSource,
      });
      const { plan, report, targets } = planned;
      const m = applyPlan(a, planned, this.pm);
      if (!data) {
        // Serialized only if asked for (a measured speed check): a data-free prune never holds the bytes.
        let bytes: Uint8Array | undefined;
        return {
          ...{ criterion, widths, label, recalibrated: m, plan, core: report, targets },
          get prunedBytes() {
            return (bytes ??= serializeModel(m));
          },
          get recalibratedBytes() {
            return (bytes ??= serializeModel(m));
          },
          score: { top1: 0, loss: 0, images: 0 },
        };
      }
      const prunedBytes = serializeModel(m);
      const base = { criterion, widths, label, prunedBytes, recalibrated: m, plan, core: report, targets };
      if (this.hasBatchNorm) {
        await recalibrateBatchNorm(m, data.train, {
          spec: data.spec,
          ...this.recalibration(data),
          seed: this.seed,
          runtime: this.runtime,
        });
      }
      const recalibratedBytes = this.hasBatchNorm ? serializeModel(m) : prunedBytes;
      const s = await this.candidateScore(recalibratedBytes);
      this.log(
        `  ${plan.criterion}, ${label} widths: proxy top-1 ${(100 * s.top1).toFixed(2)}%, loss ${s.loss.toFixed(4)}${s.task !== undefined ? `, labelled ${data.task!.layout.task} figure ${s.task.toFixed(4)}` : ''}`,
      );
      return { ...base, recalibratedBytes, score: s };
    });
  }

  /** What the budget was and what the result achieved; a given plan reports the budget it was made for. */
  private reportedBudget(
    plan: Plan,
    core: CoreReport,
    originalMs: number | undefined,
    prunedMs: number | undefined,
  ): PruneReport['budget'] {
    const { options, budget } = this;
    if (options.plan !== undefined) {
      const kind = plan.budget?.kind ?? 'flops';
      const key = kind === 'params' ? 'params' : 'macs';
      return {
        kind,
        ...(plan.budget && { target: plan.budget.ratio }),
        achieved: core.pruned[key] / core.original[key],
        plan: options.planSource ?? 'given in memory',
      };
    }
    const key = budget.params !== undefined ? 'params' : 'macs';
    return {
      kind: options.latency !== undefined ? 'latency' : budget.params !== undefined ? 'params' : 'flops',
      target: options.latency ?? budget.params ?? budget.flops ?? 1,
      achieved:
        options.latency !== undefined && originalMs && prunedMs
          ? prunedMs / originalMs
          : core.pruned[key] / core.original[key],
    };
  }

  private widthLabel(w: WidthConfig): string {
    if (this.options.plan !== undefined) return 'the plan';
    const parts: string[] = [w.source];
    if (w.roundTo !== this.baseOptions.roundTo) parts.push(`round ${w.roundTo}`);
    if (w.trial !== undefined) parts.push(`trial ${w.trial}`);
    return parts.join(', ');
  }

  /**
   * Widths, then channels: the width sources (with one criterion), the chosen source at finer roundings and
   * perturbed around it (`search` with data), then the criteria on the best widths; the best candidate is kept.
   */
  private async chooseCandidate(
    criteria: Criterion[],
    widthOption: WidthSource | 'search',
  ): Promise<{ best: Candidate; rows: CriterionRow[] }> {
    const classScores = await this.taylorClassScores(criteria);
    const searching = widthOption === 'search' && this.options.plan === undefined;
    const roundTo = this.baseOptions.roundTo!;
    const sources: WidthSource[] = searching
      ? [...SEARCHED_WIDTHS]
      : [widthOption === 'search' ? 'structural' : widthOption];
    const first = criteria.includes('l1') ? 'l1' : criteria[0]!;
    const candidates: Candidate[] = [];
    let chosen: WidthConfig = { source: sources[0]!, roundTo };
    if (searching) {
      for (const source of sources)
        candidates.push(await this.build(first, { source, roundTo }, classScores));
      chosen = rankCandidates(candidates)[0]!.widths;
      chosen = await this.refineRounding(chosen, first, classScores, candidates);
      const trials = this.options.widthTrials ?? DEFAULT_WIDTH_TRIALS;
      for (let trial = 1; trial <= trials; trial++)
        candidates.push(await this.build(first, { ...chosen, trial }, classScores));
      chosen = rankCandidates(candidates.filter((c) => c.widths.roundTo === chosen.roundTo))[0]!.widths;
    }
    for (const criterion of criteria) {
      if (candidates.some((c) => c.criterion === criterion && c.widths === chosen)) continue;
      candidates.push(await this.build(criterion, chosen, classScores));
      if (this.options.plan !== undefined) break; // a given plan fixes the channels: one candidate
    }
    const best = rankCandidates(candidates.filter((c) => c.widths === chosen))[0]!;
    const rows: CriterionRow[] = this.data
      ? candidates.map((c) => ({
          criterion: c.plan.criterion,
          widths: c.label,
          roundTo: c.widths.roundTo,
          top1: c.score.top1,
          loss: c.score.loss,
          ...(c.score.task !== undefined && { task: Number.isFinite(c.score.task) ? c.score.task : null }),
          chosen: c === best,
        }))
      : [];
    return { best, rows };
  }

  /**
   * Without a --round-to from the user, the chosen source is also tried at finer roundings: multiples of 8 leave
   * a 16-channel group only 8 or 16 (ResNet-56 at 31% MACs: 37.5% compensated at multiples of 8, 54.4% at exact
   * widths). A finer one is kept only when it scores better and the pruned model is still faster than the
   * original, so the speed-aware default holds: by the static table (default), or measured (`speedCheck: retry`).
   */
  private async refineRounding(
    chosen: WidthConfig,
    criterion: Criterion,
    classScores: Awaited<ReturnType<typeof taylorScores>> | undefined,
    candidates: Candidate[],
  ): Promise<WidthConfig> {
    if (this.options.roundTo !== undefined) return chosen;
    const finer: Candidate[] = [];
    for (const roundTo of FINER_ROUNDINGS.filter((r) => r < chosen.roundTo))
      finer.push(await this.build(criterion, { source: chosen.source, roundTo }, classScores));
    candidates.push(...finer);
    const coarse = candidates.find((c) => c.widths === chosen)!;
    for (const c of rankCandidates(finer)) {
      if (rankCandidates([coarse, c])[0] === coarse) break;
      if (await this.fasterThanOriginal(c.recalibrated, c.prunedBytes, `round ${c.widths.roundTo}`))
        return c.widths;
    }
    return chosen;
  }

  /** Whether a pruned model is faster than the original: by the static table, or measured under `retry`. */
  private async fasterThanOriginal(m: Model, bytes: Uint8Array, label: string): Promise<boolean> {
    if (this.options.speedCheck === 'retry') {
      const [originalMs, prunedMs] = await this.stage(`measure latency at ${label}`, () =>
        this.timeSideBySide([this.original, bytes]),
      );
      this.log(`  ${label}: ${prunedMs!.toFixed(3)} ms vs ${originalMs!.toFixed(3)} ms original`);
      return prunedMs! < originalMs!;
    }
    const ratio = this.staticRatio(m);
    this.log(`  ${label}: static latency estimate ${ratio.toFixed(3)} of the original`);
    return ratio < 1;
  }

  /** staticLatencyCost of `m` over the original's: a deterministic estimate, below 1 when faster. */
  private staticRatio(m: Model): number {
    try {
      this.originalCost ??= staticLatencyCost(this.input, this.options.inputShapes);
      return staticLatencyCost(m, this.options.inputShapes) / this.originalCost;
    } catch {
      return NaN; // shapes the cost model cannot follow: no estimate, so no rounding is changed for it
    }
  }

  /** Least-squares compensation of the best candidate, kept when it lowers the proxy loss. */
  private async compensate(best: Candidate): Promise<Outcome> {
    const { data, options } = this;
    const outcome: Outcome = { best, result: best.recalibrated };
    if (!data || options.compensate === false) return outcome;
    if (!best.targets.some((t) => !t.skip)) {
      this.skipped.push('compensation (no layer reads a pruned channel)');
      return outcome;
    }
    const c = await this.stage('compensate', () =>
      runCompensation(best.prunedBytes, this.original, best.targets, {
        dataset: data.train,
        spec: data.spec,
        pool: this.split!.rest,
        images: this.calibrationImages(data),
        seed: this.seed,
        runtime: this.runtime,
        ...(this.hasBatchNorm && {
          recalibration: {
            ...this.recalibration(data),
          },
        }),
        score: (bytes) => this.score(bytes, data.train, this.split!.holdout),
        batchSize: this.runBatchOf(100),
        log: this.log,
      }),
    );
    const used = c.score.loss < best.score.loss;
    this.log(
      `  compensated: proxy top-1 ${(100 * c.score.top1).toFixed(2)}%, loss ${c.score.loss.toFixed(4)} (${used ? 'kept' : 'not kept: no better than without'})`,
    );
    outcome.compensation = { ...c.summary, used, proxyLossBefore: best.score.loss };
    if (used) {
      outcome.result = c.model;
      outcome.compensatedBytes = c.bytes;
    }
    return outcome;
  }

  /** Accuracy of each stage on the evaluation set, and fine-tuning (distilled from the original by default). */
  private async dataStages(outcome: Outcome): Promise<Outcome> {
    const { data, options } = this;
    if (!data || options.dryRun) return outcome;
    const { best, compensatedBytes } = outcome;
    const evaluateStage = this.evaluateStage.bind(this);
    await evaluateStage('pruned', 'pruned', best.prunedBytes);
    if (this.hasBatchNorm) await evaluateStage('recalibrated', 'recalibrated', best.recalibratedBytes);
    if (compensatedBytes) await evaluateStage('compensated', 'compensated', compensatedBytes);
    // Recalibration can lose fidelity where the original's statistics were not taken on this data: the plain
    // pruned model stays a candidate for writing.
    const models: [AccuracyStage['stage'], Model][] = this.hasBatchNorm
      ? [
          ['pruned', decodeModel(best.prunedBytes)],
          ['recalibrated', best.recalibrated],
        ]
      : [['pruned', best.recalibrated]];
    if (compensatedBytes) models.push(['compensated', outcome.result]);
    const ft = options.finetune;
    if (!ft || ft.epochs <= 0) {
      this.skipped.push('fine-tuning (--finetune-epochs 0)');
      return this.keep(outcome, models);
    }
    const { distill, distillGate, from, ...given } = ft;
    const asked = {
      ...given,
      batchSize: given.batchSize ?? (hasLabels(data.train) ? DEFAULT_PRUNE_BATCH : this.distilBatch()),
    };
    const rest = { ...asked, batchSize: this.batchOf(asked.batchSize) };
    if (given.batchSize === undefined && !hasLabels(data.train) && asked.batchSize < DEFAULT_DISTILL_BATCH)
      this.notes.push(
        `distillation ran in batches of ${asked.batchSize}, fewer than ${DEFAULT_DISTILL_BATCH} for inputs above 224x224 (--finetune-batch sets it)`,
      );
    if (rest.batchSize !== asked.batchSize)
      this.notes.push(
        `the model's input fixes the batch at ${rest.batchSize}: training ran in batches of ${rest.batchSize}`,
      );
    const start = (from ?? DEFAULT_FINETUNE_FROM) === 'recalibrated' ? best.recalibrated : outcome.result;
    if (start !== outcome.result)
      this.log('fine-tuning starts from the recalibrated model (--finetune-from)');
    if (!hasLabels(data.train)) {
      // Without labels, distillation starts from the stage closest to the original so far.
      const start = this.mostFaithful(models);
      const lr = rest.lr ?? this.distilLr(rest.batchSize);
      const distilled = await this.stage('distil from the original', () =>
        distilWithRetry(
          lr,
          rest.lr === undefined,
          (lr) =>
            distillStage(start, this.fresh(), data.train, this.split!.rest, {
              epochs: rest.epochs,
              lr,
              batchSize: rest.batchSize,
              ...(rest.limit !== undefined && { limit: rest.limit }),
              sgd: { ...rest.sgd, nesterov: rest.sgd?.nesterov ?? DEFAULT_PRUNE_NESTEROV },
              ...(data.outputKinds && { outputKinds: data.outputKinds }),
              spec: data.spec,
              seed: this.seed,
              runtime: this.runtime,
              ...(this.options.inputShapes && { inputShapes: this.options.inputShapes }),
              ...(options.onFinetuneStep && { onStep: options.onFinetuneStep }),
            }),
          (line) => {
            this.notes.push(line);
            this.warn(line);
          },
        ),
      );
      if (!distilled) return this.keep(outcome, models);
      // Train-mode BN left running statistics from a few noisy batches: estimate them again, as after pruning.
      if (this.hasBatchNorm && rest.batchSize >= FROZEN_BN_BELOW)
        await this.stage('recalibrate the distilled model', () =>
          recalibrateBatchNorm(distilled, data.train, {
            spec: data.spec,
            ...this.recalibration(data),
            seed: this.seed,
            runtime: this.runtime,
          }),
        );
      await evaluateStage('finetuned', 'distilled', serializeModel(distilled));
      return this.keep(outcome, [...models, ['finetuned', distilled]]);
    }
    const tuned = await this.stage('fine-tune', () =>
      finetune(start, requireLabels(data.train), {
        ...rest,
        lr: rest.lr ?? this.labelledLr(),
        // After the spread: an `augment: undefined` from the caller must not undo prune's default.
        augment: rest.augment ?? DEFAULT_PRUNE_AUGMENT,
        sgd: { ...rest.sgd, nesterov: rest.sgd?.nesterov ?? DEFAULT_PRUNE_NESTEROV },
        spec: data.spec,
        seed: this.seed,
        ...(this.options.inputShapes && { inputShapes: this.options.inputShapes }),
        device: this.runtime.device,
        threads: this.runtime.threads,
        onStep: options.onFinetuneStep,
        ...((distill ?? DEFAULT_DISTILL)
          ? { teacher: { model: this.fresh(), gate: distillGate ?? DEFAULT_DISTILL_GATE } }
          : {}),
      }),
    );
    await evaluateStage('finetuned', 'fine-tuned', serializeModel(tuned.model));
    return this.keep(outcome, [...models, ['finetuned', tuned.model]]);
  }

  /**
   * Distillation's batch when none is given: DEFAULT_DISTILL_BATCH up to 224x224 inputs and proportionally fewer
   * above, but never under FROZEN_BN_BELOW, so BN still trains on batch statistics. At 640x640 the training
   * step over 16 images held 9.7 GB (PP-OCRv4's text detector, docs/results.md).
   */
  private distilBatch(): number {
    // A model whose input fixes the batch trains at its own batch whatever is asked (batchOf).
    if (this.batchOf(DEFAULT_DISTILL_BATCH) !== DEFAULT_DISTILL_BATCH) return DEFAULT_DISTILL_BATCH;
    return Math.max(FROZEN_BN_BELOW, this.runBatchOf(DEFAULT_DISTILL_BATCH));
  }

  /** The model of the best-scored stage among `models` (a tie goes to the later one). */
  private mostFaithful(models: [AccuracyStage['stage'], Model][]): Model {
    // By R² even under --task with labels: distillation matches outputs, so it starts from the closest ones.
    const scoreOf = (stage: string): number => this.accuracy.find((a) => a.stage === stage)!.top1;
    return models.reduce((a, b) => (scoreOf(b[0]) >= scoreOf(a[0]) ? b : a))[1];
  }

  /** The default distillation rate: by the batch (BN frozen or trained), or a text model's on token data. */
  private distilLr(batchSize: number): number {
    if (!isTokenSet(this.data!.train))
      return batchSize < FROZEN_BN_BELOW ? DEFAULT_DISTILL_LR : DEFAULT_DISTILL_LR_BATCHED;
    this.notes.push(
      `distillation ran at lr ${DEFAULT_DISTILL_LR_TOKENS}, the default on token data (--finetune-lr sets it)`,
    );
    return DEFAULT_DISTILL_LR_TOKENS;
  }

  /** The default fine-tuning rate with labels: lower for a model normalised by LayerNorm without BN. */
  private labelledLr(): number {
    const layerNorm = batchNormReport(this.input).otherNorms.some((n) => /LayerNorm/.test(n));
    if (this.hasBatchNorm || !layerNorm) return DEFAULT_PRUNE_LR;
    this.notes.push(
      `fine-tuning ran at lr ${DEFAULT_PRUNE_LR_LAYERNORM}, the default for a model normalised by LayerNorm without BN (--finetune-lr sets it)`,
    );
    return DEFAULT_PRUNE_LR_LAYERNORM;
  }

  /**
   * The stage whose model is returned: the best top-1 on the evaluation set (a tie goes to the later stage), or
   * the one `keepStage` names. A later stage that scored lower is not returned without a note saying so.
   */
  private keep(outcome: Outcome, models: [AccuracyStage['stage'], Model][]): Outcome {
    const scored = models.map(([stage, model]) => ({
      stage,
      model,
      top1: this.stageValue(stage),
    }));
    const best = scored.reduce((a, b) => (b.top1 >= a.top1 ? b : a));
    const asked = this.options.keepStage ?? 'best';
    const named = asked === 'best' ? undefined : scored.find((s) => s.stage === asked);
    if (asked !== 'best' && !named)
      this.warn(`--keep-stage ${asked}: that stage did not run; the best stage (${best.stage}) is written`);
    const kept = named ?? best;
    const last = scored.at(-1)!;
    const pct = (x: number): string => this.formatStageValue(x);
    const reason = named ? '--keep-stage' : this.rankedBy();
    if (!named && kept !== last)
      this.notes.push(
        `${last.stage} scored ${pct(last.top1)}, below ${kept.stage} (${pct(kept.top1)}): the ${kept.stage} model is written; --keep-stage ${last.stage} writes the other`,
      );
    this.kept = { stage: kept.stage, reason };
    return { ...outcome, result: kept.model };
  }

  /** Validation, and the original and the result timed side by side. */
  private async measure(outcome: Outcome): Promise<Outcome> {
    const { options } = this;
    if (options.dryRun) return { ...outcome, originalMs: this.baselineMs };
    // The input file's buffer goes before onnxruntime's allocations (the peak of a prune): the models that still
    // view it read their bytes back from the file when needed.
    releaseLoadedFile(this.input);
    if (options.validate !== false)
      await this.stage('validate', () => validateModel(outcome.result, this.validationDims()));
    const measured =
      options.measureLatency === true || options.speedCheck === 'retry' || options.latency !== undefined;
    if (!measured) {
      this.skipped.push('latency measurement (--measure-latency to time the original and the result)');
      return { ...outcome, originalMs: this.baselineMs };
    }
    // Measured again side by side with the pruned model, so the reported speed-up compares like with like.
    const [originalMs, prunedMs] = await this.stage('measure latency before/after', () =>
      this.timeSideBySide([this.original, serializeModel(outcome.result)]),
    );
    return { ...outcome, originalMs, prunedMs };
  }

  /**
   * Slower than the original at the default rounding: without data (one candidate, nothing trained) the prune
   * is cheap to redo, so the next coarser roundings are tried. Slower by the static table (ORT_CHANNEL_COST) by
   * default, so the choice is the same on every machine; measured only under `speedCheck: retry`.
   */
  private async coarsen(outcome: Outcome): Promise<Outcome> {
    const { options } = this;
    const canCoarsen =
      !this.data &&
      options.roundTo === undefined &&
      options.latency === undefined &&
      options.plan === undefined;
    if (!canCoarsen) return outcome;
    const measured = options.speedCheck === 'retry';
    const ratioOf = async (o: Outcome): Promise<number | undefined> =>
      measured
        ? o.originalMs !== undefined && o.prunedMs !== undefined
          ? o.prunedMs / o.originalMs
          : undefined
        : this.staticRatio(o.result);
    let current = outcome;
    for (const roundTo of [2 * DEFAULT_ROUND_TO, 4 * DEFAULT_ROUND_TO]) {
      const ratio = await ratioOf(current);
      if (ratio === undefined || !(ratio > 1)) break;
      const coarser = await this.stage(`re-prune at --round-to ${roundTo}`, async () => {
        const a = await this.analysis();
        let r: PlannedPrune;
        try {
          r = planPrune(a, {
            ...this.baseOptions,
            ...this.budget,
            roundTo,
            wideRounding: undefined,
            criterion: current.best.criterion,
          });
        } catch (e) {
          // Coarser steps can overshoot the budget (16-channel groups keep 16 or nothing): keep what we have.
          if (!(e instanceof BudgetUnreachableError)) throw e;
          this.log(`  --round-to ${roundTo}: ${e.message}`);
          return undefined;
        }
        const m = applyPlan(a, r, this.pm);
        if (!measured) return { m, r, ratio: this.staticRatio(m) };
        const [o, p] = await this.timeSideBySide([this.original, serializeModel(m)]);
        return { m, r, ratio: p! / o!, o, p };
      });
      if (!coarser) break;
      this.log(
        measured
          ? `  --round-to ${roundTo}: ${coarser.p!.toFixed(3)} ms vs ${coarser.o!.toFixed(3)} ms original`
          : `  --round-to ${roundTo}: static latency estimate ${coarser.ratio.toFixed(3)} of the original`,
      );
      if (coarser.ratio >= ratio) continue;
      this.notes.push(
        `rounded channel counts to multiples of ${roundTo}: at ${this.baseOptions.roundTo} the result ${measured ? 'measured' : 'is estimated (static table of channel multiples)'} slower than the original`,
      );
      if (options.validate !== false) await validateModel(coarser.m, this.validationDims());
      const best = {
        ...current.best,
        recalibrated: coarser.m,
        plan: coarser.r.plan,
        core: coarser.r.report,
        targets: coarser.r.targets,
      };
      current = { ...current, best, result: coarser.m };
      if (measured) current = { ...current, originalMs: coarser.o, prunedMs: coarser.p };
      else if (current.prunedMs !== undefined)
        // Measured for the report only: time the result that was kept.
        [current.originalMs, current.prunedMs] = await this.timeSideBySide([
          this.original,
          serializeModel(coarser.m),
        ]);
    }
    return current;
  }

  private taskReport(scorer: StageTaskScorer): NonNullable<PruneReport['task']> {
    const { layout, labels } = scorer.options;
    return {
      name: layout.task,
      layout: this.data?.task?.source ?? 'given in memory',
      ...(labels && { labels: labels.describe }),
      ranksStages: scorer.labelled ? 'labels' : 'original',
      ranksCandidates: this.candidateTask?.labelled ? 'labels' : 'original',
    };
  }

  /** The report of the run (and the warning when the result still measures slower). */
  private finish(outcome: Outcome, criteriaRows: CriterionRow[]): AdaPruneResult {
    const { options } = this;
    const { best, result, originalMs, prunedMs, compensation } = outcome;
    if (
      originalMs !== undefined &&
      prunedMs !== undefined &&
      prunedMs > originalMs &&
      options.latency === undefined
    ) {
      const measured = `the pruned model measured slower than the original (${prunedMs.toFixed(3)} vs ${originalMs.toFixed(3)} ms at batch ${this.latencyShape()[0]})`;
      const roundTo = best.plan.budget?.roundTo ?? 1;
      const hint =
        roundTo % DEFAULT_ROUND_TO === 0
          ? `${measured} with channel counts in multiples of ${roundTo}; budget by --latency to prune to a measured speed`
          : `${measured}: channel counts that are not multiples of 8 defeat onnxruntime's blocked convolution kernels; try a coarser --round-to, or budget by --latency`;
      this.notes.push(hint);
      this.warn(hint);
    } else if (prunedMs === undefined && options.latency === undefined && this.staticRatio(result) > 1) {
      const hint = `the static latency estimate of the result (a table of onnxruntime's channel multiples) is ${this.staticRatio(result).toFixed(2)} of the original's; --measure-latency times both, --round-to 8 or --latency prunes for speed`;
      this.notes.push(hint);
      this.warn(hint);
    }
    const core = best.core;
    const moduleNames = ModuleNames.of(result);
    const report: PruneReport = {
      tool: { name: 'adapruner', version: toolVersion() },
      input: this.input.sourcePath ?? '<in-memory model>',
      output: '',
      budget: this.reportedBudget(best.plan, core, originalMs, prunedMs),
      before: {
        macs: core.original.macs,
        params: core.original.params,
        ...(originalMs !== undefined && { latencyMs: originalMs }),
      },
      after: {
        macs: core.pruned.macs,
        params: core.pruned.params,
        ...(prunedMs !== undefined && { latencyMs: prunedMs }),
      },
      accuracy: this.accuracy,
      ...(this.fidelity && { measure: 'fidelity' as const }),
      criteria: criteriaRows,
      // The plan's own name: a given plan's criterion (or 'custom'), not the one its candidate was built under.
      chosenCriterion: best.plan.criterion,
      groups: core.groups.map((g) => ({
        id: `g${g.id}`,
        label: moduleNames.value(g.anchor),
        anchor: g.anchor,
        before: g.before,
        after: g.after,
        score: g.importance,
        ...(g.frozen ? { frozen: g.frozen } : {}),
      })),
      stages: this.stages,
      ...(compensation && { compensation }),
      ...(this.data && this.hasBatchNorm && { recalibration: this.recalibration(this.data) }),
      ...(this.kept && { kept: this.kept }),
      ...(this.taskScorer && { task: this.taskReport(this.taskScorer) }),
      notes: [...this.notes, ...core.warnings, ...this.skipped.map((s) => `skipped: ${s}`)],
    };
    return {
      model: result,
      plan: best.plan,
      core,
      report,
      ...(this.latencySearch && { latencySearch: this.latencySearch }),
      skipped: this.skipped,
    };
  }
}

/**
 * Why a model without BatchNormalization has nothing to recalibrate: BN folded at export, or a design whose
 * normalisation (LayerNorm, GroupNorm) computes its statistics from each input at run time.
 */
function noRecalibrationWhy(model: Model): string {
  const report = batchNormReport(model);
  if (report.bnFolded) return 'the model has no BatchNormalization: BN was folded at export';
  if (report.otherNorms.length)
    return `the model normalises with ${report.otherNorms.join(', ')}, whose statistics come from each input at run time: nothing to re-estimate`;
  return 'the model has no BatchNormalization';
}
