import { hasLabels } from '../data/dataset.js';
import { isTokenSet } from '../data/tokens.js';
import { serializeModel, type Model } from '../ir/index.js';
import { PassManager } from '../passes/pass-manager.js';
import {
  analyzeForPruning,
  type CompensationTarget,
  type Criterion,
  type Plan,
  type PruneAnalysis,
  type PruneOptions,
  type PruneReport as CoreReport,
  type WidthSource,
} from '../prune/index.js';
import type { AccuracyStage, CompensationSummary, PruneReport } from '../report/types.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { idBounds } from '../shapes/probe.js';
import {
  DEFAULT_CALIBRATION_IMAGES,
  DEFAULT_CALIBRATION_IMAGES_UNLABELLED,
  COMPENSATION_MACS_UNLABELLED,
  DEFAULT_COMPENSATION_IMAGES_UNLABELLED,
  DEFAULT_DISTIL_EPOCHS_UNLABELLED,
  DISTIL_MACS_UNLABELLED,
  RUN_PIXELS,
} from './defaults.js';
import { measureLatencies, staticLatencyCost, type LatencySearchStep } from './latency.js';
import type { AdaPruneOptions, DataOptions } from './options.js';
import type { ProxyScore } from './scoring.js';

/**
 * What the driver settles before any candidate is built: the options every plan starts from, the budget (the
 * MACs a `--latency` search found, else the one given), and whether the model has BN to recalibrate.
 */
export interface Setup {
  base: PruneOptions;
  budget: Pick<PruneOptions, 'flops' | 'params'>;
  hasBatchNorm: boolean;
  /** `--latency`: the search's steps, and the original's time it was measured against. */
  latencySearch?: LatencySearchStep[];
  baselineMs?: number;
}

/** How a candidate's widths were made: a source, the rounding unit, and for the refinement a perturbation. */
export interface WidthConfig {
  source: WidthSource;
  roundTo: number;
  /** Seed index of a perturbed neighbour of the source's widths (jitterScores). */
  trial?: number;
}

/** The best-ranked candidate of a width or criterion comparison. */
export interface Candidate {
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
export interface Outcome {
  best: Candidate;
  result: Model;
  compensation?: CompensationSummary;
  compensatedBytes?: Uint8Array;
  originalMs?: number;
  prunedMs?: number;
  /** The stage whose model is returned, and why (recover.ts `keep`). */
  kept?: PruneReport['kept'];
}

/**
 * One run of the pipeline: its options and cleaned input, the stage timer, the helpers every stage shares, and
 * what the stages add to the report as they go (notes, skipped work, each stage's accuracy and time). What a
 * stage hands to the next is its return value, not a field here.
 */
export class RunContext {
  readonly pm: PassManager;
  readonly log: (line: string) => void;
  readonly data: DataOptions | undefined;
  readonly seed: number;
  readonly runtime: RuntimeOptions;
  /** Each stage's time, in the order they ran. */
  readonly stages: { name: string; seconds: number }[] = [];
  readonly skipped: string[] = [];
  readonly notes: string[] = [];
  /** Every evaluated stage's figures, in the order they ran. */
  readonly accuracy: AccuracyStage[] = [];
  // Every candidate runs the same width search, so the same notes would repeat once per criterion.
  private readonly warned = new Set<string>();
  private originalBytes: Uint8Array | undefined;
  private analysed: PruneAnalysis | undefined;
  private originalCost: number | undefined;

  constructor(
    readonly input: Model,
    readonly options: AdaPruneOptions,
  ) {
    this.pm = options.passManager ?? new PassManager();
    this.log = options.log ?? (() => undefined);
    this.data = options.data;
    this.seed = options.seed ?? 0;
    this.runtime = options.runtime ?? {};
  }

  /** The cleaned original, serialized when first needed (data, latency): a data-free prune never holds it. */
  get original(): Uint8Array {
    return (this.originalBytes ??= serializeModel(this.input));
  }

  /**
   * The batch size for running the model: `wanted`, or the model's own when its input fixes the batch dim (a
   * static export, such as ultralytics' default, bakes batch 1 into its reshapes).
   */
  batchOf(wanted: number): number {
    const dim = this.input.graph.inputs.find((v) => !v.isInitializer)?.shape?.[0];
    return typeof dim === 'number' && dim > 0 ? dim : wanted;
  }

  /**
   * Images per inference run (scoring, BN statistics, compensation's activations): `wanted` up to 224x224
   * inputs, proportionally fewer above, so that one run's activations stay about as large. onnxruntime's arena
   * keeps its peak: a 640x640 text detector's prune peaked at 19 GB with 64-image recalibration batches and
   * 100-image compensation batches.
   */
  runBatchOf(wanted: number): number {
    const fixed = this.batchOf(wanted);
    const input = this.input.graph.inputs.find((v) => !v.isInitializer);
    const dims = (input && this.options.inputShapes?.[input.name]) ?? input?.shape;
    const [h, w] = [dims?.[2], dims?.[3]];
    if (fixed !== wanted || dims?.length !== 4 || typeof h !== 'number' || typeof w !== 'number')
      return fixed;
    return Math.max(1, Math.min(wanted, Math.floor((wanted * RUN_PIXELS) / (h * w))));
  }

  /** Whether the data has labels: top-1 and fine-tuning, or fidelity and distillation (label-free.ts). */
  get labelled(): boolean {
    return this.data !== undefined && hasLabels(this.data.train);
  }

  /** Runs one named stage: logs its start and records its time for the report. */
  async stage<R>(name: string, fn: () => Promise<R> | R): Promise<R> {
    this.log(`${name}...`);
    const t = performance.now();
    const r = await fn();
    this.stages.push({ name, seconds: (performance.now() - t) / 1000 });
    return r;
  }

  /** Passes a warning on once (the same line from every candidate is said once). */
  warn(line: string): void {
    if (this.warned.has(line)) return;
    this.warned.add(line);
    this.options.warn?.(line);
  }

  /** A copy of the cleaned original (the teacher, the Taylor probe): the input itself is never changed. */
  fresh(): Model {
    const m = this.input.clone();
    m.sourcePath = undefined;
    return m;
  }

  /** Analyse once: every candidate (criteria, widths, latency steps, roundings) is a plan over it. */
  async analysis(): Promise<PruneAnalysis> {
    return (this.analysed ??= await this.stage('analyse', () =>
      analyzeForPruning(this.input, {
        inputShapes: this.options.inputShapes,
        passManager: this.pm,
        warn: (line) => this.warn(line),
      }),
    ));
  }

  /** The shapes every candidate was analysed at: validation runs there too (a dynamic H/W has no other). */
  validationDims(): Map<string, number[]> | undefined {
    return this.analysed && new Map(this.analysed.inputDims);
  }

  latencyShape(): number[] {
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

  async timeIt(bytes: Uint8Array): Promise<number> {
    return (await this.timeSideBySide([bytes]))[0]!;
  }

  timeSideBySide(models: Uint8Array[]): Promise<number[]> {
    return (
      this.options.timeModels?.(models) ??
      measureLatencies(models, {
        shape: this.latencyShape(),
        runtime: this.runtime,
        idBounds: idBounds(this.input),
      })
    );
  }

  /** staticLatencyCost of `m` over the original's: a deterministic estimate, below 1 when faster. */
  staticRatio(m: Model): number {
    try {
      this.originalCost ??= staticLatencyCost(this.input, this.options.inputShapes);
      return staticLatencyCost(m, this.options.inputShapes) / this.originalCost;
    } catch {
      return NaN; // shapes the cost model cannot follow: no estimate, so no rounding is changed for it
    }
  }

  /**
   * BN recalibration's batches: K x B as asked (default 20 x 64); a fixed-batch model averages over as many
   * images (at most 256) in batches of its own size, pooling the variance over images when they are few.
   */
  recalibration(data: DataOptions): { batches: number; batchSize: number; pooledVariance: boolean } {
    const batches = data.recalibrationBatches ?? 20;
    const batchSize = data.recalibrationBatchSize ?? 64;
    // A batch size the user gave is kept; the default shrinks for large inputs, pooling the variance below 16.
    const fixed =
      data.recalibrationBatchSize === undefined ? this.runBatchOf(batchSize) : this.batchOf(batchSize);
    if (fixed === batchSize) return { batches, batchSize, pooledVariance: false };
    // A few images a batch: their own variances would understate the data's (recalibrate.ts pooledVariance).
    const pooledVariance = fixed < 16;
    // Without labels the images are typically large (detectors): half as many, as for the held-out images
    // that rank the candidates (DEFAULT_CALIBRATION_IMAGES_UNLABELLED).
    const cap = hasLabels(data.train) ? 256 : 128;
    return {
      batches: Math.ceil(Math.min(batches * batchSize, cap) / fixed),
      batchSize: fixed,
      pooledVariance,
    };
  }

  /** `--calibration-images`, or its default: fewer without labels (DEFAULT_CALIBRATION_IMAGES_UNLABELLED). */
  calibrationImages(data: DataOptions): number {
    return (
      data.calibrationImages ??
      (hasLabels(data.train) ? DEFAULT_CALIBRATION_IMAGES : DEFAULT_CALIBRATION_IMAGES_UNLABELLED)
    );
  }

  /**
   * Training images compensation fits on: as many as are held out to rank the candidates, or without labels
   * (and no --calibration-images) as many as COMPENSATION_MACS_UNLABELLED of the original's forward passes
   * allow (`macsPerImage`: its MACs at batch 1), at most DEFAULT_COMPENSATION_IMAGES_UNLABELLED.
   */
  compensationImages(data: DataOptions, macsPerImage: number): number {
    const held = this.calibrationImages(data);
    if (data.calibrationImages !== undefined || !unlabelledImages(data)) return held;
    const affordable = Math.floor(COMPENSATION_MACS_UNLABELLED / Math.max(1, macsPerImage));
    return Math.max(held, Math.min(DEFAULT_COMPENSATION_IMAGES_UNLABELLED, affordable));
  }

  /**
   * Fine-tuning epochs when --finetune-epochs is not given: 1, or without labels on images as many as
   * DISTIL_MACS_UNLABELLED of the original's forward passes over the `images` it trains on allow, from 1 to
   * DEFAULT_DISTIL_EPOCHS_UNLABELLED.
   */
  defaultEpochs(data: DataOptions, macsPerImage: number, images: number): number {
    if (!unlabelledImages(data)) return 1;
    const affordable = Math.floor(DISTIL_MACS_UNLABELLED / (Math.max(1, macsPerImage) * Math.max(1, images)));
    return Math.max(1, Math.min(DEFAULT_DISTIL_EPOCHS_UNLABELLED, affordable));
  }
}

/** Images without labels: where compensation's images and distillation's epochs are bounded by MACs. */
function unlabelledImages(data: DataOptions): boolean {
  return !hasLabels(data.train) && !isTokenSet(data.train);
}
