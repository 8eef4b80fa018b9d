import type { AnyDataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import type { Model } from '../ir/index.js';
import type { PassManager } from '../passes/pass-manager.js';
import type {
  Criterion,
  Plan,
  PruneOptions,
  PruneReport as CoreReport,
  WidthSource,
} from '../prune/index.js';
import type { PruneReport } from '../report/types.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { TaskLabels } from '../tasks/task-labels.js';
import type { DistillGate } from '../train/step-graph.js';
import type { OutputKind } from '../train/distill.js';
import type { FinetuneOptions } from '../train/loop.js';
import type { FinetuneStart } from './defaults.js';
import type { LatencySearchStep } from './latency.js';
import type { StageTaskOptions } from './stage-task.js';

// What a caller of adaPrune gives and gets back; adaprune.ts re-exports them, where importers find them.

export interface DataOptions {
  /**
   * Training images. Without labels (a plain folder of images) every stage reads images only: candidates are
   * ranked and stages reported by fidelity to the original, and recovery distils from it (label-free.ts).
   */
  train: AnyDataset;
  /** Where accuracy is reported; without it, the calibration split of the training data. */
  val?: AnyDataset;
  valLimit?: number;
  spec: PreprocessSpec;
  /** Training images held out to rank the candidates (class-balanced, seeded). Default 1000. */
  calibrationImages?: number;
  /** BN recalibration: K batches of B training images. Defaults 20 x 64. */
  recalibrationBatches?: number;
  recalibrationBatchSize?: number;
  /** Without labels: how each output is matched when distilling (one, or one per output; default auto). */
  outputKinds?: readonly OutputKind[];
  /**
   * `--task detect|segment|dense`: every stage is also measured by the task's metric (stage-task.ts), against
   * the labels of the evaluation images when given (they then rank the stages) and against the original's
   * outputs. `source` says where the layout came from, for the report. `trainLabels`, the labels of the
   * training images, rank the candidates on the held-out ones by the labelled figure.
   */
  task?: StageTaskOptions & { source?: string; trainLabels?: TaskLabels };
}

/** The data-free options are pruneModel's (budget, width limits, plan); the rest drive the data stages. */
export interface AdaPruneOptions extends Pick<
  PruneOptions,
  | 'flops'
  | 'params'
  | 'uniform'
  | 'roundTo'
  | 'compensationScope'
  | 'minChannels'
  | 'minFraction'
  | 'torchCompatible'
  | 'seed'
  | 'plan'
  | 'planSource'
  | 'inputShapes'
> {
  /** Fraction of the original's measured latency. */
  latency?: number;
  /**
   * Where the keep ratios come from (see src/prune/width-prior.ts), or `search`: one candidate per source in
   * SEARCHED_WIDTHS, each recalibrated and scored on the calibration split, the best kept. Default: `search`
   * with data, `structural` without; `uniform` when `uniform` is set.
   */
  widths?: WidthSource | 'search';
  /** Perturbed neighbours of the chosen widths that `search` also scores (default DEFAULT_WIDTH_TRIALS). */
  widthTrials?: number;
  /** A criterion, or `auto`: build one candidate per criterion and keep the best on the calibration split. */
  criterion?: Criterion | 'auto';
  /** Candidates `auto` compares (default: every criterion). */
  candidates?: readonly Criterion[];
  data?: DataOptions;
  /** Least-squares compensation of the chosen candidate (needs `data`; default true with data). */
  compensate?: boolean;
  /**
   * Fine-tuning after pruning; skipped when absent or epochs is 0. `augment` defaults to DEFAULT_PRUNE_AUGMENT,
   * `sgd.nesterov` to DEFAULT_PRUNE_NESTEROV.
   */
  finetune?: Omit<
    FinetuneOptions,
    'spec' | 'seed' | 'teacher' | 'device' | 'threads' | 'lr' | 'batchSize' | 'epochs'
  > & {
    /** Epochs (0 skips; default 1, or without labels on images RunContext.defaultEpochs: up to 20 as MACs allow). */
    epochs?: number;
    /** Peak learning rate (default DEFAULT_PRUNE_LR, or DEFAULT_DISTILL_LR on images without labels). */
    lr?: number;
    /** Images per step (default DEFAULT_PRUNE_BATCH, or DEFAULT_DISTILL_BATCH on images without labels). */
    batchSize?: number;
    /** Distillation from the original (default false: DEFAULT_DISTILL's measurements). */
    distill?: boolean;
    /** The model fine-tuning starts from (default DEFAULT_FINETUNE_FROM). */
    from?: FinetuneStart;
    /**
     * Which images distillation applies to (step-graph.ts `Distillation`). Default 'teacher-correct': on ResNet-56
     * at 50% MACs (JPEG CIFAR-10, 2 epochs) it scored 86.52% where distilling on every image scored 85.26%.
     */
    distillGate?: DistillGate;
  };
  runtime?: RuntimeOptions;
  /** Batch size latency is measured at (default 1). */
  latencyBatch?: number;
  /**
   * Time the original and the result side by side in onnxruntime for the report (default false). It only
   * reports: a measurement depends on the machine's load, so it decides nothing unless `speedCheck` is `retry`.
   */
  measureLatency?: boolean;
  /**
   * How a rounding is judged faster than the original: `static` (default) by staticLatencyCost, a fixed table of
   * onnxruntime's channel multiples, so the same input and options give the same bytes on any machine; `retry` by
   * measured latency (the finer roundings of `--widths search`, and a data-free result that measures slower is
   * re-pruned at coarser roundings), which makes the output depend on the load.
   */
  speedCheck?: SpeedCheck;
  /**
   * Times models side by side, one median ms per batch each; default onnxruntime's benchmark at `latencyBatch`.
   * Lets a caller bring its own timer, and tests make the speed-dependent decisions deterministic.
   */
  timeModels?: (models: Uint8Array[]) => Promise<number[]>;
  /** Stop once the plan is made (candidates ranked when there is data); nothing is fine-tuned or written. */
  dryRun?: boolean;
  /** Verify the result and run it in onnxruntime (default true). */
  validate?: boolean;
  passManager?: PassManager;
  /** Progress lines (stage starts, candidate scores). */
  log?: (line: string) => void;
  warn?: (line: string) => void;
  onFinetuneStep?: FinetuneOptions['onStep'];
  /**
   * The stage whose model is returned (and written): `best` (default), the highest top-1 on the evaluation set
   * of the stages that ran (a tie goes to the later stage), or a stage by name.
   */
  keepStage?: KeepStage;
}

/** What `keepStage` may name: `best`, or one of the stages that yield a model. */
export const KEEP_STAGES = ['best', 'pruned', 'recalibrated', 'compensated', 'finetuned'] as const;
export type KeepStage = (typeof KEEP_STAGES)[number];

export interface AdaPruneResult {
  model: Model;
  plan: Plan;
  core: CoreReport;
  report: PruneReport;
  latencySearch?: LatencySearchStep[];
  skipped: string[];
}

/** How roundings are judged faster (AdaPruneOptions.speedCheck). */
export const SPEED_CHECKS = ['static', 'retry'] as const;
export type SpeedCheck = (typeof SPEED_CHECKS)[number];
