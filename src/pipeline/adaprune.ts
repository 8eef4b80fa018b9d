import { batchNormReport } from '../analysis/bn-report.js';
import type { Dataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { balancedSubset, holdoutSplit } from '../data/subset.js';
import { UserError } from '../errors.js';
import { decodeModel, serializeModel, type Model } from '../ir/index.js';
import { cleanupPipeline } from '../passes/index.js';
import { PassManager } from '../passes/pass-manager.js';
import {
  CRITERIA,
  analyzeForPruning,
  applyPlan,
  budgetFloorOf,
  planPrune,
  toolVersion,
  type Criterion,
  type Plan,
  type PruneAnalysis,
  type PruneOptions,
} from '../prune/index.js';
import { validateModel } from '../runtime/validate.js';
import type { PruneReport as CoreReport } from '../prune/index.js';
import type { AccuracyStage, CriterionRow, PruneReport } from '../report/types.js';
import { recalibrateBatchNorm } from '../runtime/recalibrate.js';
import { evaluate } from '../runtime/evaluate.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { finetune, type FinetuneOptions } from '../train/loop.js';
import { measureLatencies, searchLatencyBudget, type LatencySearchStep } from './latency.js';

export interface DataOptions {
  train: Dataset;
  /** Where accuracy is reported; without it, the calibration split of the training data. */
  val?: Dataset;
  valLimit?: number;
  spec: PreprocessSpec;
  /** Training images held out to rank the candidates (class-balanced, seeded). Default 1000. */
  calibrationImages?: number;
  /** BN recalibration: K batches of B training images. Defaults 20 x 64. */
  recalibrationBatches?: number;
  recalibrationBatchSize?: number;
}

/** The data-free options are pruneModel's (budget, width limits, plan); the rest drive the data stages. */
export interface AdaPruneOptions extends Pick<
  PruneOptions,
  | 'flops'
  | 'params'
  | 'uniform'
  | 'roundTo'
  | 'minChannels'
  | 'minFraction'
  | 'seed'
  | 'plan'
  | 'planSource'
  | 'inputShapes'
> {
  /** Fraction of the original's measured latency. */
  latency?: number;
  /** A criterion, or `auto`: build one candidate per criterion and keep the best on the calibration split. */
  criterion?: Criterion | 'auto';
  /** Candidates `auto` compares (default: every criterion). */
  candidates?: readonly Criterion[];
  data?: DataOptions;
  /** Fine-tuning after pruning; skipped when absent or epochs is 0. */
  finetune?: Omit<FinetuneOptions, 'spec' | 'seed' | 'teacher' | 'device' | 'threads'> & {
    distill?: boolean;
  };
  runtime?: RuntimeOptions;
  /** Batch size latency is measured at (default 1). */
  latencyBatch?: number;
  /** Measure onnxruntime latency of the original and the result for the report (default true). */
  measureLatency?: boolean;
  /** Stop once the plan is made (candidates ranked when there is data); nothing is fine-tuned or written. */
  dryRun?: boolean;
  /** Verify the result and run it in onnxruntime (default true). */
  validate?: boolean;
  passManager?: PassManager;
  /** Progress lines (stage starts, candidate scores). */
  log?: (line: string) => void;
  warn?: (line: string) => void;
  onFinetuneStep?: FinetuneOptions['onStep'];
}

export interface AdaPruneResult {
  model: Model;
  plan: Plan;
  core: CoreReport;
  report: PruneReport;
  latencySearch?: LatencySearchStep[];
  skipped: string[];
}

/** Top-1 and mean cross-entropy on fixed samples: what the stages report and the candidates are ranked by. */
interface ProxyScore {
  top1: number;
  loss: number;
  images: number;
}

/** Candidates best first: higher top-1, then (on a small calibration split, ties are common) lower loss. */
function rankCandidates<T extends { score: ProxyScore }>(candidates: T[]): T[] {
  return [...candidates].sort((a, b) => b.score.top1 - a.score.top1 || a.score.loss - b.score.loss);
}

/**
 * The AdaPruner method end to end: cleanup, channel groups and BN block scores, bisection to the budget, one
 * candidate per inheritance criterion, BN recalibration of each, a proxy score on held-out training images,
 * the best kept, fine-tuning, validation. Without data it is the data-free prune and says what it skipped.
 */
export async function adaPrune(input: Model, options: AdaPruneOptions): Promise<AdaPruneResult> {
  const pm = options.passManager ?? new PassManager();
  const log = options.log ?? (() => undefined);
  const stages: { name: string; seconds: number }[] = [];
  const stage = async <R>(name: string, fn: () => Promise<R> | R): Promise<R> => {
    log(`${name}...`);
    const t = performance.now();
    const r = await fn();
    stages.push({ name, seconds: (performance.now() - t) / 1000 });
    return r;
  };
  const skipped: string[] = [];
  // Every candidate runs the same width search, so the same notes would repeat once per criterion.
  const warned = new Set<string>();
  const warn = (line: string): void => {
    if (warned.has(line)) return;
    warned.add(line);
    options.warn?.(line);
  };
  const notes: string[] = [];
  const data = options.data;
  const seed = options.seed ?? 0;
  const criterionOption = options.criterion ?? (data ? 'auto' : 'l1');
  if (criterionOption === 'auto' && !data)
    throw new UserError('--criterion auto compares candidates on data: give --data, or name a criterion');
  if (options.latency !== undefined && (options.flops !== undefined || options.params !== undefined))
    throw new UserError('give one budget: --flops, --params or --latency');

  await stage('cleanup', () => cleanupPipeline(pm, input));
  const original = serializeModel(input);
  const fresh = (): Model => {
    const m = decodeModel(original);
    m.sourcePath = undefined;
    return m;
  };

  const runtime = options.runtime ?? {};
  const split = data
    ? holdoutSplit(
        data.train.labels,
        Math.min(data.calibrationImages ?? 1000, Math.floor(data.train.length / 2)),
        seed,
      )
    : undefined;
  const evalSet = data ? (data.val ?? data.train) : undefined;
  const evalIndices = data
    ? data.val
      ? data.valLimit !== undefined
        ? balancedSubset(data.val.labels, data.valLimit, seed)
        : undefined
      : split!.holdout
    : undefined;
  if (data && !data.val)
    notes.push('no --val given: accuracy is reported on the calibration split of the training data');
  const score = async (
    bytes: Uint8Array,
    dataset: Dataset,
    indices: ArrayLike<number> | undefined,
  ): Promise<ProxyScore> => {
    const r = await evaluate(bytes, dataset, { spec: data!.spec, runtime, ...(indices && { indices }) });
    return { top1: r.top1, loss: r.loss, images: r.n };
  };
  const accuracy: AccuracyStage[] = [];
  const record = (stageName: AccuracyStage['stage'], s: ProxyScore): void => {
    accuracy.push({ stage: stageName, top1: s.top1, loss: s.loss, images: s.images });
    log(
      `  ${stageName}: top-1 ${(100 * s.top1).toFixed(2)}% (loss ${s.loss.toFixed(4)}, ${s.images} images)`,
    );
  };
  if (data)
    record('original', await stage('evaluate original', () => score(original, evalSet!, evalIndices)));
  else
    skipped.push(
      'accuracy (no --data)',
      'adaptive criterion choice (no --data)',
      'BN recalibration (no --data)',
      'fine-tuning (no --data)',
    );

  // Analyse once: every candidate (criteria, latency steps) is a plan over the same analysis.
  let analysed: PruneAnalysis | undefined;
  const analysis = async (): Promise<PruneAnalysis> =>
    (analysed ??= await stage('analyse', () =>
      analyzeForPruning(input, { inputShapes: options.inputShapes, passManager: pm, warn }),
    ));

  const latencyShape = (): number[] => {
    const dims = input.graph.inputs[0]?.shape ?? [];
    return dims.map((d, i) =>
      i === 0
        ? (options.latencyBatch ?? 1)
        : typeof d === 'number'
          ? d
          : (options.inputShapes?.[input.graph.inputs[0]!.name]?.[i] ?? 1),
    );
  };
  const timeIt = async (bytes: Uint8Array): Promise<number> =>
    (await measureLatencies([bytes], { shape: latencyShape(), runtime }))[0]!;
  const baseOptions: PruneOptions = {
    uniform: options.uniform,
    roundTo: options.roundTo ?? (options.latency !== undefined ? 8 : undefined),
    minChannels: options.minChannels,
    minFraction: options.minFraction,
    seed,
    inputShapes: options.inputShapes,
    passManager: pm,
    warn,
  };
  let budget: Pick<PruneOptions, 'flops' | 'params'> = { flops: options.flops, params: options.params };
  let latencySearch: LatencySearchStep[] | undefined;
  let baselineMs: number | undefined;
  if (options.latency !== undefined) {
    if (!(options.latency > 0 && options.latency <= 1))
      throw new UserError(`--latency must be in (0, 1], got ${options.latency}`);
    baselineMs = await stage('measure latency', () => timeIt(original));
    // The search starts from the smallest model the width limits allow (a little above, for rounding).
    const floor = budgetFloorOf(await analysis(), baseOptions);
    const minFlops = Math.min(1, floor.flops * 1.02 + 1e-3);
    const found = await stage('latency search', () =>
      searchLatencyBudget(
        options.latency!,
        baselineMs!,
        async (flops) => {
          // Width-rounding notes of intermediate candidates are noise; the final prune reports its own.
          const a = await analysis();
          const planned = planPrune(a, { ...baseOptions, warn: undefined, flops, criterion: 'l1' });
          return serializeModel(applyPlan(a, planned, pm));
        },
        timeIt,
        { minFlops },
      ),
    );
    latencySearch = found.steps;
    for (const s of found.steps)
      log(
        `  MACs ${(100 * s.flops).toFixed(1)}% -> ${s.medianMs.toFixed(3)} ms (${(100 * s.ratio).toFixed(1)}% of the original)`,
      );
    if (found.medianMs > options.latency * baselineMs)
      notes.push(
        `latency target ${options.latency} not reached: the smallest candidate measured ${(found.medianMs / baselineMs).toFixed(3)} of the original`,
      );
    budget = { flops: found.flops };
  }

  const hasBatchNorm = input.graph.nodes.some((n) => n.opType === 'BatchNormalization');
  if (data && !hasBatchNorm)
    skipped.push(
      `BN recalibration (the model has no BatchNormalization${batchNormReport(input).bnFolded ? ': BN was folded at export' : ''})`,
    );
  const criteria: Criterion[] =
    criterionOption === 'auto' ? [...(options.candidates ?? CRITERIA)] : [criterionOption];
  interface Candidate {
    criterion: Criterion;
    /** Serialized as it was before recalibration, for the report's "pruned" accuracy. */
    prunedBytes: Uint8Array;
    recalibrated: Model;
    recalibratedBytes: Uint8Array;
    plan: Plan;
    core: CoreReport;
    score: ProxyScore;
  }
  const candidates: Candidate[] = [];
  for (const criterion of criteria) {
    const built = await stage(`candidate ${criterion}`, async () => {
      const a = await analysis();
      const planned = planPrune(a, {
        ...baseOptions,
        ...budget,
        criterion,
        plan: options.plan,
        planSource: options.planSource,
      });
      const { plan, report } = planned;
      const m = applyPlan(a, planned, pm);
      const prunedBytes = serializeModel(m);
      if (!data)
        return {
          criterion,
          prunedBytes,
          recalibrated: m,
          recalibratedBytes: prunedBytes,
          plan,
          core: report,
          score: { top1: 0, loss: 0, images: 0 },
        };
      const recalibrated = m;
      if (hasBatchNorm) {
        await recalibrateBatchNorm(recalibrated, data.train, {
          spec: data.spec,
          batches: data.recalibrationBatches ?? 20,
          batchSize: data.recalibrationBatchSize ?? 64,
          seed,
          runtime,
        });
      }
      const recalibratedBytes = hasBatchNorm ? serializeModel(recalibrated) : prunedBytes;
      const s = await score(recalibratedBytes, data.train, split!.holdout);
      log(`  ${criterion}: proxy top-1 ${(100 * s.top1).toFixed(2)}%, loss ${s.loss.toFixed(4)}`);
      return { criterion, prunedBytes, recalibrated, recalibratedBytes, plan, core: report, score: s };
    });
    candidates.push(built);
    if (options.plan !== undefined) break; // a given plan fixes the channels: one candidate
  }
  const best = rankCandidates(candidates)[0]!;
  const criteriaRows: CriterionRow[] = data
    ? candidates.map((c) => ({
        criterion: c.criterion,
        top1: c.score.top1,
        loss: c.score.loss,
        chosen: c === best,
      }))
    : [];

  let result = best.recalibrated;
  if (data && !options.dryRun) {
    record('pruned', await stage('evaluate pruned', () => score(best.prunedBytes, evalSet!, evalIndices)));
    if (hasBatchNorm)
      record(
        'recalibrated',
        await stage('evaluate recalibrated', () => score(best.recalibratedBytes, evalSet!, evalIndices)),
      );
    const ft = options.finetune;
    if (ft && ft.epochs > 0) {
      const { distill, ...rest } = ft;
      const tuned = await stage('fine-tune', () =>
        finetune(best.recalibrated, data.train, {
          ...rest,
          spec: data.spec,
          seed,
          device: runtime.device,
          threads: runtime.threads,
          onStep: options.onFinetuneStep,
          ...(distill ? { teacher: { model: fresh() } } : {}),
        }),
      );
      result = tuned.model;
      record(
        'finetuned',
        await stage('evaluate fine-tuned', () => score(serializeModel(result), evalSet!, evalIndices)),
      );
    } else skipped.push('fine-tuning (--finetune-epochs 0)');
  }

  let prunedMs: number | undefined;
  let originalMs = baselineMs;
  if (!options.dryRun) {
    if (options.validate !== false) await stage('validate', () => validateModel(result));
    if (options.measureLatency !== false) {
      // Measured again side by side with the pruned model, so the reported speed-up compares like with like.
      [originalMs, prunedMs] = await stage('measure latency before/after', () =>
        measureLatencies([original, serializeModel(result)], { shape: latencyShape(), runtime }),
      );
    }
  }
  if (
    originalMs !== undefined &&
    prunedMs !== undefined &&
    prunedMs > originalMs &&
    options.latency === undefined
  ) {
    const hint = `the pruned model measured slower than the original (${prunedMs.toFixed(3)} vs ${originalMs.toFixed(3)} ms at batch ${latencyShape()[0]}): channel counts that are not multiples of 8 defeat onnxruntime's blocked convolution kernels; try --round-to 8, or budget by --latency`;
    notes.push(hint);
    warn(hint);
  }
  const core = best.core;
  const key = budget.params !== undefined ? 'params' : 'macs';
  const report: PruneReport = {
    tool: { name: 'adapruner', version: toolVersion() },
    input: input.sourcePath ?? '<in-memory model>',
    output: '',
    budget: {
      kind: options.latency !== undefined ? 'latency' : budget.params !== undefined ? 'params' : 'flops',
      target: options.latency ?? budget.params ?? budget.flops ?? 1,
      achieved:
        options.latency !== undefined && originalMs && prunedMs
          ? prunedMs / originalMs
          : core.pruned[key] / core.original[key],
    },
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
    accuracy,
    criteria: criteriaRows,
    chosenCriterion: best.criterion,
    groups: core.groups.map((g) => ({
      id: `g${g.id}`,
      label: g.anchor,
      before: g.before,
      after: g.after,
      score: g.importance,
      ...(g.frozen ? { frozen: g.frozen } : {}),
    })),
    stages,
    notes: [...notes, ...core.warnings, ...skipped.map((s) => `skipped: ${s}`)],
  };
  return { model: result, plan: best.plan, core, report, ...(latencySearch && { latencySearch }), skipped };
}
