import { runCompensation } from '../compensation-stage.js';
import type { Candidate, Outcome, RunContext, Setup } from '../context.js';
import type { Scoring } from '../scoring.js';

/** Least-squares compensation of the best candidate, kept when it lowers the proxy loss. */
export async function compensate(
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
      ...(setup.hasBatchNorm && { recalibration: ctx.recalibration(data) }),
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
