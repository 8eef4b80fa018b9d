import { BudgetUnreachableError, UserError } from '../../errors.js';
import { serializeModel } from '../../ir/index.js';
import { applyPlan, budgetFloorOf, planPrune, type PruneOptions } from '../../prune/index.js';
import type { RunContext } from '../context.js';
import { searchLatencyBudget, type LatencySearchStep } from '../latency.js';

/** What the latency search settles: the MAC budget found, its steps, and the original's measured time. */
export interface LatencyBudget {
  budget: Pick<PruneOptions, 'flops' | 'params'>;
  steps: LatencySearchStep[];
  baselineMs: number;
}

/** `--latency R`: bisect the MAC budget on measured latency; the budget becomes the MACs found. */
export async function searchLatency(
  ctx: RunContext,
  base: PruneOptions,
  target: number,
): Promise<LatencyBudget> {
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
