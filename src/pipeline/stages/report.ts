import { toolVersion, type Plan, type PruneReport as CoreReport } from '../../prune/index.js';
import { ModuleNames } from '../../report/module-names.js';
import type { CriterionRow, PruneReport } from '../../report/types.js';
import type { Outcome, RunContext, Setup } from '../context.js';
import { DEFAULT_ROUND_TO } from '../defaults.js';
import type { AdaPruneResult } from '../options.js';
import type { Scoring } from '../scoring.js';
import type { StageTaskScorer } from '../stage-task.js';

/** The report of the run (and the warning when the result still measures slower). */
export function finish(
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
