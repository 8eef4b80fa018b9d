import { runCompensation } from '../compensation-stage.js';
import type { Candidate, Outcome, RunContext, Setup } from '../context.js';
import type { ProxyScore, Scoring } from '../scoring.js';
import { rankCandidates } from './candidates.js';

type ScoreOf = (bytes: Uint8Array) => Promise<ProxyScore>;

interface Compensated {
  outcome: Outcome;
  /** What it goes on with: the compensated model's score, or the candidate's own where the fit is not kept. */
  score: ProxyScore;
}

/**
 * Least-squares compensation of the best candidate, kept when it lowers the proxy loss. With `others` (the
 * search's other finalists, candidates.ts `finalists`) each is compensated too and the one that ranks first
 * afterwards goes on, by the ranking the candidates had.
 */
export async function compensate(
  ctx: RunContext,
  setup: Setup,
  scoring: Scoring | undefined,
  best: Candidate,
  others: Candidate[] = [],
): Promise<Outcome> {
  if (!scoring || ctx.options.compensate === false) return { best, result: best.recalibrated };
  const { data, split } = scoring;
  // Finalists compare as the candidates did (with the task figure where they had one); a lone fit needs only
  // the proxy loss, and a labelled task figure would cost one more run of the model.
  const scoreOf: ScoreOf =
    others.length > 0
      ? (bytes) => scoring.candidateScore(bytes)
      : (bytes) => scoring.score(bytes, data.train, split.holdout);
  const searched = await compensateOne(ctx, setup, scoring, best, 'compensate', scoreOf);
  if (others.length === 0) return searched.outcome;
  const all = [searched];
  for (const c of others)
    all.push(await compensateOne(ctx, setup, scoring, c, `compensate ${c.label} widths`, scoreOf));
  const first = rankCandidates(all)[0]!;
  const figure = (f: Compensated): string =>
    `${f.outcome.best.label} ${f.score.task !== undefined ? f.score.task.toFixed(4) : `loss ${f.score.loss.toFixed(4)}`}`;
  ctx.log(`  finalists after compensation: ${all.map(figure).join(', ')}: ${first.outcome.best.label} kept`);
  if (first !== searched)
    ctx.notes.push(
      `compensated, the ${first.outcome.best.label} widths ranked above the searched ${best.label} widths (${all.map(figure).join(', ')}): they were kept`,
    );
  return first.outcome;
}

async function compensateOne(
  ctx: RunContext,
  setup: Setup,
  scoring: Scoring,
  candidate: Candidate,
  stageName: string,
  scoreOf: ScoreOf,
): Promise<Compensated> {
  const outcome: Outcome = { best: candidate, result: candidate.recalibrated };
  const { data, split } = scoring;
  if (!candidate.targets.some((t) => !t.skip)) {
    const why = 'compensation (no layer reads a pruned channel)';
    if (!ctx.skipped.includes(why)) ctx.skipped.push(why); // once, whichever finalists it holds for
    return { outcome, score: candidate.score };
  }
  const c = await ctx.stage(stageName, () =>
    runCompensation(candidate.prunedBytes, ctx.original, candidate.targets, {
      dataset: data.train,
      spec: data.spec,
      pool: split.rest,
      images: ctx.compensationImages(data, candidate.core.original.macs),
      seed: ctx.seed,
      runtime: ctx.runtime,
      ...(setup.hasBatchNorm && { recalibration: ctx.recalibration(data) }),
      score: scoreOf,
      batchSize: ctx.runBatchOf(100),
      log: ctx.log,
    }),
  );
  const used = c.score.loss < candidate.score.loss;
  ctx.log(
    `  compensated: proxy top-1 ${(100 * c.score.top1).toFixed(2)}%, loss ${c.score.loss.toFixed(4)} (${used ? 'kept' : 'not kept: no better than without'})`,
  );
  outcome.compensation = { ...c.summary, used, proxyLossBefore: candidate.score.loss };
  if (!used) return { outcome, score: candidate.score };
  outcome.result = c.model;
  outcome.compensatedBytes = c.bytes;
  return { outcome, score: c.score };
}
