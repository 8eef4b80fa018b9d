import { hasLabels } from '../../data/dataset.js';
import { balancedSubset, holdoutSplit } from '../../data/subset.js';
import { UserError } from '../../errors.js';
import type { RunContext } from '../context.js';
import { FidelityScorer, randomSplit } from '../label-free.js';
import { Scoring } from '../scoring.js';
import { StageTaskScorer } from '../stage-task.js';

/**
 * The calibration split, where accuracy is reported, and the original's accuracy. Without data, nothing: the
 * data-free prune says what it skipped.
 */
export async function prepareData(ctx: RunContext): Promise<Scoring | undefined> {
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
