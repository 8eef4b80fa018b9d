import { batchNormReport } from '../analysis/bn-report.js';
import { BudgetUnreachableError, UserError } from '../errors.js';
import { releaseLoadedFile, serializeModel, type Model } from '../ir/index.js';
import { cleanupPipeline } from '../passes/index.js';
import {
  CRITERIA,
  applyPlan,
  planPrune,
  toolVersion,
  type Criterion,
  type Plan,
  type PlannedPrune,
  type PruneOptions,
  type PruneReport as CoreReport,
  type WidthSource,
} from '../prune/index.js';
import { ModuleNames } from '../report/module-names.js';
import type { CriterionRow, PruneReport } from '../report/types.js';
import { validateModel } from '../runtime/validate.js';
import { RunContext, type Outcome, type Setup } from './context.js';
import { DEFAULT_ROUND_TO, DEFAULT_WIDE_ROUNDING } from './defaults.js';
import type { AdaPruneOptions, AdaPruneResult } from './options.js';
import type { Scoring } from './scoring.js';
import type { StageTaskScorer } from './stage-task.js';
import { chooseCandidate } from './stages/candidates.js';
import { compensate } from './stages/compensate.js';
import { searchLatency } from './stages/latency-search.js';
import { prepareData } from './stages/prepare-data.js';
import { recover } from './stages/recover.js';

// The defaults and their reasons live in defaults.ts; importers of the pipeline keep finding them here.
export * from './defaults.js';
// So do the options and the result (options.ts).
export * from './options.js';

/**
 * The AdaPruner method end to end: cleanup, channel groups and BN block scores, bisection to the budget, one
 * candidate per inheritance criterion, BN recalibration of each, a proxy score on held-out training images,
 * the best kept, fine-tuning, validation. Without data it is the data-free prune and says what it skipped.
 *
 * The driver: each stage (stages/, or below) takes the run's context (context.ts: options, the stage timer,
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
