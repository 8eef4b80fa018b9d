import { batchNormReport } from '../analysis/bn-report.js';
import { hasLabels, requireLabels } from '../data/dataset.js';
import { mixSeed, mulberry32, shuffle } from '../data/prng.js';
import { balancedSubset, holdoutSplit } from '../data/subset.js';
import { isTokenSet } from '../data/tokens.js';
import { BudgetUnreachableError, UserError } from '../errors.js';
import { decodeModel, releaseLoadedFile, serializeModel, type Model } from '../ir/index.js';
import { cleanupPipeline } from '../passes/index.js';
import {
  CRITERIA,
  applyPlan,
  budgetFloorOf,
  planPrune,
  taylorScores,
  toolVersion,
  type Criterion,
  type Plan,
  type PlannedPrune,
  type PruneOptions,
  type PruneReport as CoreReport,
  type WidthSource,
} from '../prune/index.js';
import { ModuleNames } from '../report/module-names.js';
import type { AccuracyStage, CriterionRow, PruneReport } from '../report/types.js';
import { recalibrateBatchNorm } from '../runtime/recalibrate.js';
import { validateModel } from '../runtime/validate.js';
import { FROZEN_BN_BELOW } from '../train/distill.js';
import { finetune } from '../train/loop.js';
import { DEFAULT_DISTILL_GATE } from '../train/step-graph.js';
import { runCompensation } from './compensation-stage.js';
import { RunContext, type Candidate, type Outcome, type Setup, type WidthConfig } from './context.js';
import {
  DEFAULT_DISTILL,
  DEFAULT_DISTILL_BATCH,
  DEFAULT_DISTILL_LR,
  DEFAULT_DISTILL_LR_BATCHED,
  DEFAULT_DISTILL_LR_TOKENS,
  DEFAULT_FINETUNE_FROM,
  DEFAULT_PRUNE_AUGMENT,
  DEFAULT_PRUNE_BATCH,
  DEFAULT_PRUNE_LR,
  DEFAULT_PRUNE_LR_LAYERNORM,
  DEFAULT_PRUNE_NESTEROV,
  DEFAULT_ROUND_TO,
  DEFAULT_WIDE_ROUNDING,
  DEFAULT_WIDTH_TRIALS,
  FINER_ROUNDINGS,
  SEARCHED_WIDTHS,
  WIDTH_JITTER,
} from './defaults.js';
import { distilWithRetry } from './distil-retry.js';
import { FidelityScorer, distillStage, randomSplit } from './label-free.js';
import { searchLatencyBudget, type LatencySearchStep } from './latency.js';
import type { AdaPruneOptions, AdaPruneResult } from './options.js';
import { Scoring, type ProxyScore } from './scoring.js';
import { StageTaskScorer } from './stage-task.js';

// The defaults and their reasons live in defaults.ts; importers of the pipeline keep finding them here.
export * from './defaults.js';
// So do the options and the result (options.ts).
export * from './options.js';

/**
 * The AdaPruner method end to end: cleanup, channel groups and BN block scores, bisection to the budget, one
 * candidate per inheritance criterion, BN recalibration of each, a proxy score on held-out training images,
 * the best kept, fine-tuning, validation. Without data it is the data-free prune and says what it skipped.
 *
 * The driver: each stage (see below) takes the run's context (context.ts: options, the stage timer,
 * notes and accuracy for the report) and what the stage before it returned, and returns its own result.
 */
export async function adaPrune(input: Model, options: AdaPruneOptions): Promise<AdaPruneResult> {
  const ctx = new RunContext(input, options);
  const { data } = ctx;
  const criterionOption = options.criterion ?? (data ? 'auto' : 'l1');
  if (criterionOption === 'auto' && !data)
    throw new UserError('--criterion auto compares candidates on data: give --data, or name a criterion');
  if (options.latency !== undefined && (options.flops !== undefined || options.params !== undefined))
    throw new UserError('give one budget: --flops, --params or --latency');
  await ctx.stage('cleanup', () => cleanupPipeline(ctx.pm, input));
  const scoring = await prepareData(ctx);
  // Width sources: one, or (`search`, the default with data) each tried with one criterion and the best kept.
  const widthOption = options.widths ?? (options.uniform ? 'uniform' : data ? 'search' : 'structural');
  if (widthOption === 'search' && !data)
    throw new UserError('--widths search compares candidates on data: give --data, or name a width source');
  const base = baseOptions(ctx, widthOption);
  const latency = options.latency !== undefined ? await searchLatency(ctx, base, options.latency) : undefined;
  const hasBatchNorm = input.graph.nodes.some((n) => n.opType === 'BatchNormalization');
  if (data && !hasBatchNorm) ctx.skipped.push(`BN recalibration (${noRecalibrationWhy(input)})`);
  const setup: Setup = {
    base,
    budget: latency?.budget ?? { flops: options.flops, params: options.params },
    hasBatchNorm,
    ...(latency && { latencySearch: latency.steps, baselineMs: latency.baselineMs }),
  };
  // Taylor scores need a loss, and the loss labels: on unlabelled images `auto` compares the others. Without BN
  // (folded at export, a transformer) they come from the producers' weight gradients (src/prune/taylor.ts).
  const criteria: Criterion[] =
    criterionOption === 'auto'
      ? [...(options.candidates ?? CRITERIA)].filter((c) => c !== 'taylor' || ctx.labelled)
      : [criterionOption];
  if (criteria.includes('taylor') && !data)
    throw new UserError('--criterion taylor measures loss gradients on data: give --data');
  if (criteria.includes('taylor') && !ctx.labelled)
    throw new UserError('--criterion taylor measures loss gradients on labels; this data set has no labels');
  const { best, rows } = await chooseCandidate(ctx, setup, scoring, criteria, widthOption);
  let outcome = await compensate(ctx, setup, scoring, best);
  outcome = await recover(ctx, setup, scoring, outcome);
  outcome = await measure(ctx, setup, outcome);
  outcome = await coarsen(ctx, setup, outcome);
  return finish(ctx, setup, scoring, outcome, rows);
}

/** The options every candidate's plan starts from (the width source, rounding and limits asked for). */
function baseOptions(ctx: RunContext, widthOption: WidthSource | 'search'): PruneOptions {
  const { options } = ctx;
  return {
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
    seed: ctx.seed,
    inputShapes: options.inputShapes,
    passManager: ctx.pm,
    warn: (line) => ctx.warn(line),
  };
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

/**
 * The calibration split, where accuracy is reported, and the original's accuracy. Without data, nothing: the
 * data-free prune says what it skipped.
 */
async function prepareData(ctx: RunContext): Promise<Scoring | undefined> {
  const { data, seed } = ctx;
  if (!data) {
    ctx.skipped.push(
      'accuracy (no --data)',
      'adaptive criterion choice (no --data)',
      'BN recalibration (no --data)',
      'fine-tuning (no --data)',
    );
    return undefined;
  }
  const train = data.train;
  if (!hasLabels(train) && train.length < 2)
    throw new UserError(
      `the data has ${train.length} image${train.length === 1 ? '' : 's'}: scoring without labels holds some out, so give at least 2`,
      train.path,
    );
  const holdout = Math.min(ctx.calibrationImages(data), Math.floor(train.length / 2));
  if (data.val && hasLabels(data.val) !== hasLabels(train))
    throw new UserError('--data and --val must both have labels or both be plain images', data.val.path);
  let fidelity: FidelityScorer | undefined;
  if (!hasLabels(train)) {
    fidelity = new FidelityScorer(ctx.original, data.spec, ctx.runtime, ctx.runBatchOf(32));
    ctx.notes.push(
      !data.task
        ? 'the data has no labels: stages are scored by fidelity to the original (R² of the outputs), and recovery distils from it'
        : data.task.labels
          ? `the pipeline reads the images only and recovery distils from the original; the ${data.task.layout.task} labels measure and rank the stages`
          : `the data has no labels: candidates and stages are ranked by the ${data.task.layout.task} figure against the original's outputs, and recovery distils from it`,
    );
  }
  const split = hasLabels(train)
    ? holdoutSplit(train.labels, holdout, seed)
    : randomSplit(train.length, holdout, seed);
  const evalSet = data.val ?? train;
  const evalIndices = data.val
    ? data.valLimit !== undefined
      ? hasLabels(data.val)
        ? balancedSubset(data.val.labels, data.valLimit, seed)
        : randomSplit(data.val.length, Math.min(data.valLimit, data.val.length), seed).holdout
      : undefined
    : split.holdout;
  if (!data.val)
    ctx.notes.push('no --val given: accuracy is reported on the calibration split of the training data');
  const taskScorer =
    data.task &&
    new StageTaskScorer(
      ctx.original,
      evalSet,
      evalIndices,
      data.spec,
      ctx.runtime,
      ctx.runBatchOf(16),
      data.task,
    );
  const candidateTask =
    data.task &&
    new StageTaskScorer(ctx.original, train, split.holdout, data.spec, ctx.runtime, ctx.runBatchOf(16), {
      layout: data.task.layout,
      ...(data.task.trainLabels && { labels: data.task.trainLabels }),
    });
  const scoring = new Scoring(ctx, data, {
    split,
    evalSet,
    evalIndices,
    fidelity,
    taskScorer,
    candidateTask,
  });
  await scoring.evaluateStage('original', 'original', ctx.original);
  return scoring;
}

/** What the latency search settles: the MAC budget found, its steps, and the original's measured time. */
interface LatencyBudget {
  budget: Pick<PruneOptions, 'flops' | 'params'>;
  steps: LatencySearchStep[];
  baselineMs: number;
}

/** `--latency R`: bisect the MAC budget on measured latency; the budget becomes the MACs found. */
async function searchLatency(ctx: RunContext, base: PruneOptions, target: number): Promise<LatencyBudget> {
  if (!(target > 0 && target <= 1)) throw new UserError(`--latency must be in (0, 1], got ${target}`);
  // The search starts from the smallest model the width limits allow (a little above, for rounding).
  const floor = budgetFloorOf(await ctx.analysis(), base);
  // The same lower bound as --flops: latency falls no faster than MACs (fixed costs stay), so a target below
  // the smallest model's MAC share cannot be met, and is refused before anything is timed.
  if (target < floor.flops)
    throw new BudgetUnreachableError(
      `--latency ${target} is not achievable: the smallest model the width limits allow keeps ${floor.flops.toFixed(4)} of the original MACs, and latency falls no faster than MACs (lower --min-channels/--min-fraction, or unfreeze groups)`,
    );
  const minFlops = Math.min(1, floor.flops * 1.02 + 1e-3);
  const baselineMs = await ctx.stage('measure latency', () => ctx.timeIt(ctx.original));
  const found = await ctx.stage('latency search', () =>
    searchLatencyBudget(
      target,
      baselineMs,
      async (flops) => {
        // Width-rounding notes of intermediate candidates are noise; the final prune reports its own.
        const a = await ctx.analysis();
        const planned = planPrune(a, { ...base, warn: undefined, flops, criterion: 'l1' });
        return serializeModel(applyPlan(a, planned, ctx.pm));
      },
      (bytes) => ctx.timeIt(bytes),
      { minFlops },
    ),
  );
  for (const s of found.steps)
    ctx.log(
      `  MACs ${(100 * s.flops).toFixed(1)}% -> ${s.medianMs.toFixed(3)} ms (${(100 * s.ratio).toFixed(1)}% of the original)`,
    );
  if (found.medianMs > target * baselineMs)
    ctx.notes.push(
      `latency target ${target} not reached: the smallest candidate measured ${(found.medianMs / baselineMs).toFixed(3)} of the original`,
    );
  return { budget: { flops: found.flops }, steps: found.steps, baselineMs };
}

type ClassScores = Awaited<ReturnType<typeof taylorScores>> | undefined;

/** Builds one candidate of the comparison (`build` with the run's context and class scores bound). */
type Build = (criterion: Criterion, widths: WidthConfig) => Promise<Candidate>;

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

/**
 * Widths, then channels: the width sources (with one criterion), the chosen source at finer roundings and
 * perturbed around it (`search` with data), then the criteria on the best widths; the best candidate is kept.
 */
async function chooseCandidate(
  ctx: RunContext,
  setup: Setup,
  scoring: Scoring | undefined,
  criteria: Criterion[],
  widthOption: WidthSource | 'search',
): Promise<{ best: Candidate; rows: CriterionRow[] }> {
  const classScores = await taylorClassScores(ctx, scoring, criteria);
  const build: Build = (criterion, widths) =>
    buildCandidate(ctx, setup, scoring, criterion, widths, classScores);
  const searching = widthOption === 'search' && ctx.options.plan === undefined;
  const roundTo = setup.base.roundTo!;
  const sources: WidthSource[] = searching
    ? [...SEARCHED_WIDTHS]
    : [widthOption === 'search' ? 'structural' : widthOption];
  const first = criteria.includes('l1') ? 'l1' : criteria[0]!;
  const candidates: Candidate[] = [];
  let chosen: WidthConfig = { source: sources[0]!, roundTo };
  if (searching) {
    for (const source of sources) candidates.push(await build(first, { source, roundTo }));
    chosen = rankCandidates(candidates)[0]!.widths;
    chosen = await refineRounding(ctx, chosen, first, build, candidates);
    const trials = ctx.options.widthTrials ?? DEFAULT_WIDTH_TRIALS;
    for (let trial = 1; trial <= trials; trial++) candidates.push(await build(first, { ...chosen, trial }));
    chosen = rankCandidates(candidates.filter((c) => c.widths.roundTo === chosen.roundTo))[0]!.widths;
  }
  for (const criterion of criteria) {
    if (candidates.some((c) => c.criterion === criterion && c.widths === chosen)) continue;
    candidates.push(await build(criterion, chosen));
    if (ctx.options.plan !== undefined) break; // a given plan fixes the channels: one candidate
  }
  const best = rankCandidates(candidates.filter((c) => c.widths === chosen))[0]!;
  const rows: CriterionRow[] = ctx.data
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

/** First-order Taylor class scores on calibration batches, when `taylor` is among the criteria. */
async function taylorClassScores(
  ctx: RunContext,
  scoring: Scoring | undefined,
  criteria: Criterion[],
): Promise<ClassScores> {
  const { seed } = ctx;
  if (!scoring || ctx.options.plan !== undefined || !criteria.includes('taylor')) return undefined;
  const { data, split } = scoring;
  return ctx.stage('taylor scores', async () => {
    const images = Math.min(ctx.calibrationImages(data), split.rest.length);
    const indices = shuffle(Int32Array.from(split.rest), mulberry32(seed ^ 0x7a1)).subarray(0, images);
    return taylorScores(ctx.fresh(), (await ctx.analysis()).channels, requireLabels(data.train), {
      spec: data.spec,
      indices,
      runtime: ctx.runtime,
      warn: (line) => ctx.warn(line),
    });
  });
}

/** One candidate: plan, apply, recalibrate and score on the calibration split. */
async function buildCandidate(
  ctx: RunContext,
  setup: Setup,
  scoring: Scoring | undefined,
  criterion: Criterion,
  widths: WidthConfig,
  classScores: ClassScores,
): Promise<Candidate> {
  // Analysed first, as a stage of its own: inside the candidate's stage its label stayed on for the rest of
  // the candidate's work (the progress notes said "analyse" for a minute of scoring).
  await ctx.analysis();
  const label = widthLabel(ctx, setup, widths);
  const { options } = ctx;
  const { base } = setup;
  // A given plan fixes widths and channels: its candidate is named after the plan, not a width source.
  const stageName =
    options.plan !== undefined ? 'candidate from the plan' : `candidate ${criterion}, ${label} widths`;
  return ctx.stage(stageName, async () => {
    const a = await ctx.analysis();
    const planned = planPrune(a, {
      ...base,
      ...setup.budget,
      widths: widths.source,
      roundTo: widths.roundTo,
      // The finer roundings the search tries are finer everywhere.
      wideRounding: widths.roundTo === base.roundTo ? base.wideRounding : undefined,
      ...(widths.trial !== undefined && {
        widthJitter: { seed: mixSeed(ctx.seed, widths.trial), sigma: WIDTH_JITTER },
      }),
      criterion,
      ...(criterion === 'taylor' && classScores && { classScores }),
      plan: options.plan,
      planSource: options.planSource,
    });
    const { plan, report, targets } = planned;
    const m = applyPlan(a, planned, ctx.pm);
    if (!scoring) {
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
    const { data } = scoring;
    const prunedBytes = serializeModel(m);
    const candidate = { criterion, widths, label, prunedBytes, recalibrated: m, plan, core: report, targets };
    if (setup.hasBatchNorm) {
      await recalibrateBatchNorm(m, data.train, {
        spec: data.spec,
        ...ctx.recalibration(data),
        seed: ctx.seed,
        runtime: ctx.runtime,
      });
    }
    const recalibratedBytes = setup.hasBatchNorm ? serializeModel(m) : prunedBytes;
    const s = await scoring.candidateScore(recalibratedBytes);
    ctx.log(
      `  ${plan.criterion}, ${label} widths: proxy top-1 ${(100 * s.top1).toFixed(2)}%, loss ${s.loss.toFixed(4)}${s.task !== undefined ? `, labelled ${data.task!.layout.task} figure ${s.task.toFixed(4)}` : ''}`,
    );
    return { ...candidate, recalibratedBytes, score: s };
  });
}

function widthLabel(ctx: RunContext, setup: Setup, w: WidthConfig): string {
  if (ctx.options.plan !== undefined) return 'the plan';
  const parts: string[] = [w.source];
  if (w.roundTo !== setup.base.roundTo) parts.push(`round ${w.roundTo}`);
  if (w.trial !== undefined) parts.push(`trial ${w.trial}`);
  return parts.join(', ');
}

/**
 * Without a --round-to from the user, the chosen source is also tried at finer roundings: multiples of 8 leave
 * a 16-channel group only 8 or 16 (ResNet-56 at 31% MACs: 37.5% compensated at multiples of 8, 54.4% at exact
 * widths). A finer one is kept only when it scores better and the pruned model is still faster than the
 * original, so the speed-aware default holds: by the static table (default), or measured (`speedCheck: retry`).
 */
async function refineRounding(
  ctx: RunContext,
  chosen: WidthConfig,
  criterion: Criterion,
  build: Build,
  candidates: Candidate[],
): Promise<WidthConfig> {
  if (ctx.options.roundTo !== undefined) return chosen;
  const finer: Candidate[] = [];
  for (const roundTo of FINER_ROUNDINGS.filter((r) => r < chosen.roundTo))
    finer.push(await build(criterion, { source: chosen.source, roundTo }));
  candidates.push(...finer);
  const coarse = candidates.find((c) => c.widths === chosen)!;
  for (const c of rankCandidates(finer)) {
    if (rankCandidates([coarse, c])[0] === coarse) break;
    if (await fasterThanOriginal(ctx, c.recalibrated, c.prunedBytes, `round ${c.widths.roundTo}`))
      return c.widths;
  }
  return chosen;
}

/** Whether a pruned model is faster than the original: by the static table, or measured under `retry`. */
async function fasterThanOriginal(
  ctx: RunContext,
  m: Model,
  bytes: Uint8Array,
  label: string,
): Promise<boolean> {
  if (ctx.options.speedCheck === 'retry') {
    const [originalMs, prunedMs] = await ctx.stage(`measure latency at ${label}`, () =>
      ctx.timeSideBySide([ctx.original, bytes]),
    );
    ctx.log(`  ${label}: ${prunedMs!.toFixed(3)} ms vs ${originalMs!.toFixed(3)} ms original`);
    return prunedMs! < originalMs!;
  }
  const ratio = ctx.staticRatio(m);
  ctx.log(`  ${label}: static latency estimate ${ratio.toFixed(3)} of the original`);
  return ratio < 1;
}

/** Least-squares compensation of the best candidate, kept when it lowers the proxy loss. */
async function compensate(
  ctx: RunContext,
  setup: Setup,
  scoring: Scoring | undefined,
  best: Candidate,
): Promise<Outcome> {
  const outcome: Outcome = { best, result: best.recalibrated };
  if (!scoring || ctx.options.compensate === false) return outcome;
  const { data, split } = scoring;
  if (!best.targets.some((t) => !t.skip)) {
    ctx.skipped.push('compensation (no layer reads a pruned channel)');
    return outcome;
  }
  const c = await ctx.stage('compensate', () =>
    runCompensation(best.prunedBytes, ctx.original, best.targets, {
      dataset: data.train,
      spec: data.spec,
      pool: split.rest,
      images: ctx.calibrationImages(data),
      seed: ctx.seed,
      runtime: ctx.runtime,
      ...(setup.hasBatchNorm && {
        recalibration: {
          ...ctx.recalibration(data),
        },
      }),
      score: (bytes) => scoring.score(bytes, data.train, split.holdout),
      batchSize: ctx.runBatchOf(100),
      log: ctx.log,
    }),
  );
  const used = c.score.loss < best.score.loss;
  ctx.log(
    `  compensated: proxy top-1 ${(100 * c.score.top1).toFixed(2)}%, loss ${c.score.loss.toFixed(4)} (${used ? 'kept' : 'not kept: no better than without'})`,
  );
  outcome.compensation = { ...c.summary, used, proxyLossBefore: best.score.loss };
  if (used) {
    outcome.result = c.model;
    outcome.compensatedBytes = c.bytes;
  }
  return outcome;
}

/** The models of the stages that ran, each a candidate for writing. */
type StageModels = [AccuracyStage['stage'], Model][];

/** Accuracy of each stage on the evaluation set, and fine-tuning (distilled from the original by default). */
async function recover(
  ctx: RunContext,
  setup: Setup,
  scoring: Scoring | undefined,
  outcome: Outcome,
): Promise<Outcome> {
  const { options } = ctx;
  if (!scoring || options.dryRun) return outcome;
  const { data, split } = scoring;
  const { hasBatchNorm } = setup;
  const { best, compensatedBytes } = outcome;
  const evaluateStage = scoring.evaluateStage.bind(scoring);
  await evaluateStage('pruned', 'pruned', best.prunedBytes);
  if (hasBatchNorm) await evaluateStage('recalibrated', 'recalibrated', best.recalibratedBytes);
  if (compensatedBytes) await evaluateStage('compensated', 'compensated', compensatedBytes);
  // Recalibration can lose fidelity where the original's statistics were not taken on this data: the plain
  // pruned model stays a candidate for writing.
  const models: StageModels = hasBatchNorm
    ? [
        ['pruned', decodeModel(best.prunedBytes)],
        ['recalibrated', best.recalibrated],
      ]
    : [['pruned', best.recalibrated]];
  if (compensatedBytes) models.push(['compensated', outcome.result]);
  const ft = options.finetune;
  if (!ft || ft.epochs <= 0) {
    ctx.skipped.push('fine-tuning (--finetune-epochs 0)');
    return keep(ctx, scoring, outcome, models);
  }
  const { distill, distillGate, from, ...given } = ft;
  const asked = {
    ...given,
    batchSize: given.batchSize ?? (hasLabels(data.train) ? DEFAULT_PRUNE_BATCH : distilBatch(ctx)),
  };
  const rest = { ...asked, batchSize: ctx.batchOf(asked.batchSize) };
  if (given.batchSize === undefined && !hasLabels(data.train) && asked.batchSize < DEFAULT_DISTILL_BATCH)
    ctx.notes.push(
      `distillation ran in batches of ${asked.batchSize}, fewer than ${DEFAULT_DISTILL_BATCH} for inputs above 224x224 (--finetune-batch sets it)`,
    );
  if (rest.batchSize !== asked.batchSize)
    ctx.notes.push(
      `the model's input fixes the batch at ${rest.batchSize}: training ran in batches of ${rest.batchSize}`,
    );
  const start = (from ?? DEFAULT_FINETUNE_FROM) === 'recalibrated' ? best.recalibrated : outcome.result;
  if (start !== outcome.result) ctx.log('fine-tuning starts from the recalibrated model (--finetune-from)');
  if (!hasLabels(data.train)) {
    // Without labels, distillation starts from the stage closest to the original so far.
    const start = mostFaithful(ctx, models);
    const lr = rest.lr ?? distilLr(ctx, rest.batchSize);
    const distilled = await ctx.stage('distil from the original', () =>
      distilWithRetry(
        lr,
        rest.lr === undefined,
        (lr) =>
          distillStage(start, ctx.fresh(), data.train, split.rest, {
            epochs: rest.epochs,
            lr,
            batchSize: rest.batchSize,
            ...(rest.limit !== undefined && { limit: rest.limit }),
            sgd: { ...rest.sgd, nesterov: rest.sgd?.nesterov ?? DEFAULT_PRUNE_NESTEROV },
            ...(data.outputKinds && { outputKinds: data.outputKinds }),
            spec: data.spec,
            seed: ctx.seed,
            runtime: ctx.runtime,
            ...(options.inputShapes && { inputShapes: options.inputShapes }),
            ...(options.onFinetuneStep && { onStep: options.onFinetuneStep }),
          }),
        (line) => {
          ctx.notes.push(line);
          ctx.warn(line);
        },
      ),
    );
    if (!distilled) return keep(ctx, scoring, outcome, models);
    // Train-mode BN left running statistics from a few noisy batches: estimate them again, as after pruning.
    if (hasBatchNorm && rest.batchSize >= FROZEN_BN_BELOW)
      await ctx.stage('recalibrate the distilled model', () =>
        recalibrateBatchNorm(distilled, data.train, {
          spec: data.spec,
          ...ctx.recalibration(data),
          seed: ctx.seed,
          runtime: ctx.runtime,
        }),
      );
    await evaluateStage('finetuned', 'distilled', serializeModel(distilled));
    return keep(ctx, scoring, outcome, [...models, ['finetuned', distilled]]);
  }
  const tuned = await ctx.stage('fine-tune', () =>
    finetune(start, requireLabels(data.train), {
      ...rest,
      lr: rest.lr ?? labelledLr(ctx, hasBatchNorm),
      // After the spread: an `augment: undefined` from the caller must not undo prune's default.
      augment: rest.augment ?? DEFAULT_PRUNE_AUGMENT,
      sgd: { ...rest.sgd, nesterov: rest.sgd?.nesterov ?? DEFAULT_PRUNE_NESTEROV },
      spec: data.spec,
      seed: ctx.seed,
      ...(options.inputShapes && { inputShapes: options.inputShapes }),
      device: ctx.runtime.device,
      threads: ctx.runtime.threads,
      onStep: options.onFinetuneStep,
      ...((distill ?? DEFAULT_DISTILL)
        ? { teacher: { model: ctx.fresh(), gate: distillGate ?? DEFAULT_DISTILL_GATE } }
        : {}),
    }),
  );
  await evaluateStage('finetuned', 'fine-tuned', serializeModel(tuned.model));
  return keep(ctx, scoring, outcome, [...models, ['finetuned', tuned.model]]);
}

/**
 * Distillation's batch when none is given: DEFAULT_DISTILL_BATCH up to 224x224 inputs and proportionally fewer
 * above, but never under FROZEN_BN_BELOW, so BN still trains on batch statistics. At 640x640 the training
 * step over 16 images held 9.7 GB (PP-OCRv4's text detector, docs/results.md).
 */
function distilBatch(ctx: RunContext): number {
  // A model whose input fixes the batch trains at its own batch whatever is asked (batchOf).
  if (ctx.batchOf(DEFAULT_DISTILL_BATCH) !== DEFAULT_DISTILL_BATCH) return DEFAULT_DISTILL_BATCH;
  return Math.max(FROZEN_BN_BELOW, ctx.runBatchOf(DEFAULT_DISTILL_BATCH));
}

/** The model of the best-scored stage among `models` (a tie goes to the later one). */
function mostFaithful(ctx: RunContext, models: StageModels): Model {
  // By R² even under --task with labels: distillation matches outputs, so it starts from the closest ones.
  const scoreOf = (stage: string): number => ctx.accuracy.find((a) => a.stage === stage)!.top1;
  return models.reduce((a, b) => (scoreOf(b[0]) >= scoreOf(a[0]) ? b : a))[1];
}

/** The default distillation rate: by the batch (BN frozen or trained), or a text model's on token data. */
function distilLr(ctx: RunContext, batchSize: number): number {
  if (!isTokenSet(ctx.data!.train))
    return batchSize < FROZEN_BN_BELOW ? DEFAULT_DISTILL_LR : DEFAULT_DISTILL_LR_BATCHED;
  ctx.notes.push(
    `distillation ran at lr ${DEFAULT_DISTILL_LR_TOKENS}, the default on token data (--finetune-lr sets it)`,
  );
  return DEFAULT_DISTILL_LR_TOKENS;
}

/** The default fine-tuning rate with labels: lower for a model normalised by LayerNorm without BN. */
function labelledLr(ctx: RunContext, hasBatchNorm: boolean): number {
  const layerNorm = batchNormReport(ctx.input).otherNorms.some((n) => /LayerNorm/.test(n));
  if (hasBatchNorm || !layerNorm) return DEFAULT_PRUNE_LR;
  ctx.notes.push(
    `fine-tuning ran at lr ${DEFAULT_PRUNE_LR_LAYERNORM}, the default for a model normalised by LayerNorm without BN (--finetune-lr sets it)`,
  );
  return DEFAULT_PRUNE_LR_LAYERNORM;
}

/**
 * The stage whose model is returned: the best top-1 on the evaluation set (a tie goes to the later stage), or
 * the one `keepStage` names. A later stage that scored lower is not returned without a note saying so.
 */
function keep(ctx: RunContext, scoring: Scoring, outcome: Outcome, models: StageModels): Outcome {
  const scored = models.map(([stage, model]) => ({
    stage,
    model,
    top1: scoring.stageValue(stage),
  }));
  const best = scored.reduce((a, b) => (b.top1 >= a.top1 ? b : a));
  const asked = ctx.options.keepStage ?? 'best';
  const named = asked === 'best' ? undefined : scored.find((s) => s.stage === asked);
  if (asked !== 'best' && !named)
    ctx.warn(`--keep-stage ${asked}: that stage did not run; the best stage (${best.stage}) is written`);
  const kept = named ?? best;
  const last = scored.at(-1)!;
  const pct = (x: number): string => scoring.formatStageValue(x);
  const reason = named ? '--keep-stage' : scoring.rankedBy();
  if (!named && kept !== last)
    ctx.notes.push(
      `${last.stage} scored ${pct(last.top1)}, below ${kept.stage} (${pct(kept.top1)}): the ${kept.stage} model is written; --keep-stage ${last.stage} writes the other`,
    );
  return { ...outcome, result: kept.model, kept: { stage: kept.stage, reason } };
}

/** Validation, and the original and the result timed side by side. */
async function measure(ctx: RunContext, setup: Setup, outcome: Outcome): Promise<Outcome> {
  const { options } = ctx;
  if (options.dryRun) return { ...outcome, originalMs: setup.baselineMs };
  // The input file's buffer goes before onnxruntime's allocations (the peak of a prune): the models that still
  // view it read their bytes back from the file when needed.
  releaseLoadedFile(ctx.input);
  if (options.validate !== false)
    await ctx.stage('validate', () => validateModel(outcome.result, ctx.validationDims()));
  const measured =
    options.measureLatency === true || options.speedCheck === 'retry' || options.latency !== undefined;
  if (!measured) {
    ctx.skipped.push('latency measurement (--measure-latency to time the original and the result)');
    return { ...outcome, originalMs: setup.baselineMs };
  }
  // Measured again side by side with the pruned model, so the reported speed-up compares like with like.
  const [originalMs, prunedMs] = await ctx.stage('measure latency before/after', () =>
    ctx.timeSideBySide([ctx.original, serializeModel(outcome.result)]),
  );
  return { ...outcome, originalMs, prunedMs };
}

/**
 * Slower than the original at the default rounding: without data (one candidate, nothing trained) the prune
 * is cheap to redo, so the next coarser roundings are tried. Slower by the static table (ORT_CHANNEL_COST) by
 * default, so the choice is the same on every machine; measured only under `speedCheck: retry`.
 */
async function coarsen(ctx: RunContext, setup: Setup, outcome: Outcome): Promise<Outcome> {
  const { options } = ctx;
  const canCoarsen =
    !ctx.data && options.roundTo === undefined && options.latency === undefined && options.plan === undefined;
  if (!canCoarsen) return outcome;
  const measured = options.speedCheck === 'retry';
  const ratioOf = async (o: Outcome): Promise<number | undefined> =>
    measured
      ? o.originalMs !== undefined && o.prunedMs !== undefined
        ? o.prunedMs / o.originalMs
        : undefined
      : ctx.staticRatio(o.result);
  let current = outcome;
  for (const roundTo of [2 * DEFAULT_ROUND_TO, 4 * DEFAULT_ROUND_TO]) {
    const ratio = await ratioOf(current);
    if (ratio === undefined || !(ratio > 1)) break;
    const coarser = await ctx.stage(`re-prune at --round-to ${roundTo}`, async () => {
      const a = await ctx.analysis();
      let r: PlannedPrune;
      try {
        r = planPrune(a, {
          ...setup.base,
          ...setup.budget,
          roundTo,
          wideRounding: undefined,
          criterion: current.best.criterion,
        });
      } catch (e) {
        // Coarser steps can overshoot the budget (16-channel groups keep 16 or nothing): keep what we have.
        if (!(e instanceof BudgetUnreachableError)) throw e;
        ctx.log(`  --round-to ${roundTo}: ${e.message}`);
        return undefined;
      }
      const m = applyPlan(a, r, ctx.pm);
      if (!measured) return { m, r, ratio: ctx.staticRatio(m) };
      const [o, p] = await ctx.timeSideBySide([ctx.original, serializeModel(m)]);
      return { m, r, ratio: p! / o!, o, p };
    });
    if (!coarser) break;
    ctx.log(
      measured
        ? `  --round-to ${roundTo}: ${coarser.p!.toFixed(3)} ms vs ${coarser.o!.toFixed(3)} ms original`
        : `  --round-to ${roundTo}: static latency estimate ${coarser.ratio.toFixed(3)} of the original`,
    );
    if (coarser.ratio >= ratio) continue;
    ctx.notes.push(
      `rounded channel counts to multiples of ${roundTo}: at ${setup.base.roundTo} the result ${measured ? 'measured' : 'is estimated (static table of channel multiples)'} slower than the original`,
    );
    if (options.validate !== false) await validateModel(coarser.m, ctx.validationDims());
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
      [current.originalMs, current.prunedMs] = await ctx.timeSideBySide([
        ctx.original,
        serializeModel(coarser.m),
      ]);
  }
  return current;
}

/** The report of the run (and the warning when the result still measures slower). */
function finish(
  ctx: RunContext,
  setup: Setup,
  scoring: Scoring | undefined,
  outcome: Outcome,
  criteriaRows: CriterionRow[],
): AdaPruneResult {
  const { options } = ctx;
  const { best, result, originalMs, prunedMs, compensation, kept } = outcome;
  if (
    originalMs !== undefined &&
    prunedMs !== undefined &&
    prunedMs > originalMs &&
    options.latency === undefined
  ) {
    const measured = `the pruned model measured slower than the original (${prunedMs.toFixed(3)} vs ${originalMs.toFixed(3)} ms at batch ${ctx.latencyShape()[0]})`;
    const roundTo = best.plan.budget?.roundTo ?? 1;
    const hint =
      roundTo % DEFAULT_ROUND_TO === 0
        ? `${measured} with channel counts in multiples of ${roundTo}; budget by --latency to prune to a measured speed`
        : `${measured}: channel counts that are not multiples of 8 defeat onnxruntime's blocked convolution kernels; try a coarser --round-to, or budget by --latency`;
    ctx.notes.push(hint);
    ctx.warn(hint);
  } else if (prunedMs === undefined && options.latency === undefined && ctx.staticRatio(result) > 1) {
    const hint = `the static latency estimate of the result (a table of onnxruntime's channel multiples) is ${ctx.staticRatio(result).toFixed(2)} of the original's; --measure-latency times both, --round-to 8 or --latency prunes for speed`;
    ctx.notes.push(hint);
    ctx.warn(hint);
  }
  const core = best.core;
  const moduleNames = ModuleNames.of(result);
  const report: PruneReport = {
    tool: { name: 'adapruner', version: toolVersion() },
    input: ctx.input.sourcePath ?? '<in-memory model>',
    output: '',
    budget: reportedBudget(ctx, setup, best.plan, core, originalMs, prunedMs),
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
    accuracy: ctx.accuracy,
    ...(scoring?.fidelity && { measure: 'fidelity' as const }),
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
    stages: ctx.stages,
    ...(compensation && { compensation }),
    ...(ctx.data && setup.hasBatchNorm && { recalibration: ctx.recalibration(ctx.data) }),
    ...(kept && { kept }),
    ...(scoring?.taskScorer && { task: taskReport(ctx, scoring, scoring.taskScorer) }),
    notes: [...ctx.notes, ...core.warnings, ...ctx.skipped.map((s) => `skipped: ${s}`)],
  };
  return {
    model: result,
    plan: best.plan,
    core,
    report,
    ...(setup.latencySearch && { latencySearch: setup.latencySearch }),
    skipped: ctx.skipped,
  };
}

/** What the budget was and what the result achieved; a given plan reports the budget it was made for. */
function reportedBudget(
  ctx: RunContext,
  setup: Setup,
  plan: Plan,
  core: CoreReport,
  originalMs: number | undefined,
  prunedMs: number | undefined,
): PruneReport['budget'] {
  const { options } = ctx;
  const { budget } = setup;
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

function taskReport(
  ctx: RunContext,
  scoring: Scoring,
  scorer: StageTaskScorer,
): NonNullable<PruneReport['task']> {
  const { layout, labels } = scorer.options;
  return {
    name: layout.task,
    layout: ctx.data?.task?.source ?? 'given in memory',
    ...(labels && { labels: labels.describe }),
    ranksStages: scorer.labelled ? 'labels' : 'original',
    ranksCandidates: scoring.candidateTask?.labelled ? 'labels' : 'original',
  };
}
