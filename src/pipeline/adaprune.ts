import { batchNormReport } from '../analysis/bn-report.js';
import { UserError } from '../errors.js';
import type { Model } from '../ir/index.js';
import { cleanupPipeline } from '../passes/index.js';
import { CRITERIA, type Criterion, type PruneOptions, type WidthSource } from '../prune/index.js';
import { RunContext, type Setup } from './context.js';
import { DEFAULT_BLOCK_FLOOR, DEFAULT_ROUND_TO, DEFAULT_WIDE_ROUNDING } from './defaults.js';
import type { AdaPruneOptions, AdaPruneResult } from './options.js';
import { candidateRows, chooseCandidate } from './stages/candidates.js';
import { coarsen } from './stages/coarsen.js';
import { compensate } from './stages/compensate.js';
import { searchLatency } from './stages/latency-search.js';
import { measure } from './stages/measure.js';
import { prepareData } from './stages/prepare-data.js';
import { recover } from './stages/recover.js';
import { finish } from './stages/report.js';

// The defaults and their reasons live in defaults.ts; importers of the pipeline keep finding them here.
export * from './defaults.js';
// So do the options and the result (options.ts).
export * from './options.js';

/**
 * The AdaPruner method end to end: cleanup, channel groups and BN block scores, bisection to the budget, one
 * candidate per inheritance criterion, BN recalibration of each, a proxy score on held-out training images,
 * the best kept, fine-tuning, validation. Without data it is the data-free prune and says what it skipped.
 *
 * The driver: each stage (src/pipeline/stages/) takes the run's context (context.ts: options, the stage timer,
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
  const widthOption = options.widths ?? (options.uniform ? 'uniform' : data ? 'search' : 'speed');
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
  const { best, others, candidates } = await chooseCandidate(ctx, setup, scoring, criteria, widthOption);
  let outcome = await compensate(ctx, setup, scoring, best, others);
  outcome = await recover(ctx, setup, scoring, outcome);
  outcome = await measure(ctx, setup, outcome);
  outcome = await coarsen(ctx, setup, outcome);
  return finish(ctx, setup, scoring, outcome, candidateRows(ctx, candidates, outcome.best));
}

/** The options every candidate's plan starts from (the width source, rounding and limits asked for). */
function baseOptions(ctx: RunContext, widthOption: WidthSource | 'search'): PruneOptions {
  const { options } = ctx;
  return {
    widths: widthOption === 'search' ? 'structural' : widthOption,
    uniform: options.uniform,
    // Multiples of 8 by default: off them, onnxruntime's blocked (NCHWc) convolution kernels fall back to
    // slower paths and a model with half the MACs can run slower than the original (docs/history.md,
    // "Latency at a MAC budget").
    roundTo: options.roundTo ?? DEFAULT_ROUND_TO,
    ...(options.roundTo === undefined && {
      wideRounding: DEFAULT_WIDE_ROUNDING,
      blockFloor: DEFAULT_BLOCK_FLOOR,
    }),
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
