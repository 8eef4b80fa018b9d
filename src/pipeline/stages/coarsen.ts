import { BudgetUnreachableError } from '../../errors.js';
import { serializeModel } from '../../ir/index.js';
import { applyPlan, planPrune, type PlannedPrune } from '../../prune/index.js';
import { validateModel } from '../../runtime/validate.js';
import type { Outcome, RunContext, Setup } from '../context.js';
import { DEFAULT_ROUND_TO } from '../defaults.js';

/**
 * Slower than the original at the default rounding: without data (one candidate, nothing trained) the prune
 * is cheap to redo, so the next coarser roundings are tried. Slower by the static table (ORT_CHANNEL_COST) by
 * default, so the choice is the same on every machine; measured only under `speedCheck: retry`.
 */
export async function coarsen(ctx: RunContext, setup: Setup, outcome: Outcome): Promise<Outcome> {
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
          blockFloor: undefined,
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
