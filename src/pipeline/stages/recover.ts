import { batchNormReport } from '../../analysis/bn-report.js';
import { hasLabels, requireLabels } from '../../data/dataset.js';
import { isTokenSet } from '../../data/tokens.js';
import { decodeModel, serializeModel, type Model } from '../../ir/index.js';
import type { AccuracyStage } from '../../report/types.js';
import { recalibrateBatchNorm } from '../../runtime/recalibrate.js';
import { FROZEN_BN_BELOW } from '../../train/distill.js';
import { finetune } from '../../train/loop.js';
import { DEFAULT_ADAMW_LR } from '../../train/optimizer.js';
import { DEFAULT_DISTILL_GATE } from '../../train/step-graph.js';
import type { Outcome, RunContext, Setup } from '../context.js';
import {
  DEFAULT_DISTILL,
  DEFAULT_DISTIL_EPOCHS_UNLABELLED,
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
} from '../defaults.js';
import { distilWithRetry } from '../distil-retry.js';
import { distillStage } from '../label-free.js';
import type { Scoring } from '../scoring.js';

/** The models of the stages that ran, each a candidate for writing. */
type StageModels = [AccuracyStage['stage'], Model][];

/** Accuracy of each stage on the evaluation set, and fine-tuning (distilled from the original by default). */
export async function recover(
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
  if (!ft || (ft.epochs !== undefined && ft.epochs <= 0)) {
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
  const adamW = rest.sgd?.optimizer === 'adamw';
  const start = (from ?? DEFAULT_FINETUNE_FROM) === 'recalibrated' ? best.recalibrated : outcome.result;
  if (start !== outcome.result) ctx.log('fine-tuning starts from the recalibrated model (--finetune-from)');
  if (!hasLabels(data.train)) {
    // Without labels, distillation starts from the stage closest to the original so far.
    const start = mostFaithful(ctx, models);
    const lr = rest.lr ?? (adamW ? DEFAULT_ADAMW_LR : distilLr(ctx, rest.batchSize));
    const epochs = rest.epochs ?? distilEpochs(ctx, best, data, split.rest.length, rest.limit);
    const distilled = await ctx.stage('distil from the original', () =>
      distilWithRetry(
        lr,
        rest.lr === undefined,
        (lr) =>
          distillStage(start, ctx.fresh(), data.train, split.rest, {
            epochs,
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
      epochs: rest.epochs ?? ctx.defaultEpochs(data, best.core.original.macs, split.rest.length),
      lr: rest.lr ?? (adamW ? DEFAULT_ADAMW_LR : labelledLr(ctx, hasBatchNorm)),
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

/** The default epochs without labels (RunContext.defaultEpochs), said in the report when more than one. */
function distilEpochs(
  ctx: RunContext,
  best: Outcome['best'],
  data: NonNullable<RunContext['data']>,
  pool: number,
  limit: number | undefined,
): number {
  const epochs = ctx.defaultEpochs(data, best.core.original.macs, Math.min(pool, limit ?? pool));
  if (epochs > 1)
    ctx.notes.push(
      `distillation ran ${epochs} epochs, as many as the original's MACs allow up to ${DEFAULT_DISTIL_EPOCHS_UNLABELLED} (--finetune-epochs sets it)`,
    );
  return epochs;
}

/**
 * Distillation's batch when none is given: DEFAULT_DISTILL_BATCH up to 224x224 inputs and proportionally fewer
 * above, but never under FROZEN_BN_BELOW, so BN still trains on batch statistics. At 640x640 the training
 * step over 16 images held 9.7 GB (PP-OCRv4's text detector, docs/history.md).
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
