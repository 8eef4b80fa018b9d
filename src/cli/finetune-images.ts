import type { UnlabelledDataset } from '../data/dataset.js';
import { openDataset } from '../data/open.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { UserError } from '../errors.js';
import type { Model } from '../ir/index.js';
import { sameFeeds } from '../runtime/preflight.js';
import { recalibrateBatchNorm } from '../runtime/recalibrate.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { DEFAULT_DISTILL_LR_BATCHED } from '../pipeline/defaults.js';
import { distillFromOriginal, FROZEN_BN_BELOW } from '../train/distill.js';
import {
  checkDistillationRun,
  distillOptionsOf,
  runtimeOf,
  startFidelity,
  writeDistilled,
} from './distil-cli.js';
import type { FinetuneArgs } from './finetune.js';

/** What the handler has already read and checked: the student, its teacher, the images and how to feed them. */
export interface UnlabelledRun {
  model: Model;
  teacher: Model | undefined;
  train: UnlabelledDataset;
  spec: PreprocessSpec;
  inputShapes: Record<string, number[]> | undefined;
}

/** Batches BN statistics are estimated again on after distillation (of the training batch size). */
const RECALIBRATION_BATCHES = 20;

/**
 * `finetune MODEL --data IMAGES --teacher ORIGINAL.onnx` on images without labels (a plain folder, a `.tar` of
 * one, a `.txt` list): the model learns the original's outputs, as prune's label-free recovery does, so a
 * pruned model can be recovered again later on more images or for longer. With `--val` (images), its fidelity
 * R² to the teacher before and after.
 */
export async function finetuneUnlabelled(args: FinetuneArgs, run: UnlabelledRun): Promise<void> {
  const teacher = requireTeacher(args, run.teacher);
  refuseLabelledOptions(args);
  sameFeeds(run.model, teacher, args.teacher!, "the teacher is fed the model's batches");
  const val =
    args.val !== undefined ? await openDataset(args.val, { split: 'test', labels: 'optional' }) : undefined;
  await checkDistillationRun(args, run.model, run.inputShapes);
  const runtime = runtimeOf(args);
  // Scored at the training batch: the model's own where its input fixes it (trainingBatch in finetune.ts).
  const fidelity = await startFidelity(teacher, run.model, val, args, {
    spec: run.spec,
    runtime,
    batchSize: args.batch,
  });
  const result = await distillFromOriginal(run.model, teacher, run.train, {
    ...distillOptionsOf(args, DEFAULT_DISTILL_LR_BATCHED),
    spec: run.spec,
    ...(run.inputShapes && { inputShapes: run.inputShapes }),
    ...runtime,
  });
  await reestimateBatchNorm(result.model, run, args, runtime);
  await writeDistilled(args, result, run.inputShapes, fidelity);
}

function requireTeacher(args: FinetuneArgs, teacher: Model | undefined): Model {
  if (teacher) return teacher;
  throw new UserError(
    'these images have no labels: give --teacher ORIGINAL.onnx to distil from the original, or labelled images (one subfolder per class)',
    args.data,
  );
}

/** Options that shape training on labels: without labels they would change nothing, so say so. */
function refuseLabelledOptions(args: FinetuneArgs): void {
  const given = [
    args.temperature !== undefined && '--temperature',
    args.alpha !== undefined && '--alpha',
    args.distillGate !== undefined && '--distill-gate',
    args.labelSmoothing > 0 && '--label-smoothing',
    args.sam > 0 && '--sam',
    args.warmup > 0 && '--warmup',
    args.schedule !== 'cosine' && '--schedule',
    args.resume && '--resume',
    args.checkpoint !== undefined && '--checkpoint',
  ].filter(Boolean);
  if (given.length > 0)
    throw new UserError(
      `${given.join(', ')} ${given.length === 1 ? 'does' : 'do'} not apply to distillation on images without labels (docs/finetune.md)`,
      args.data,
    );
}

/**
 * Train-mode BN leaves running statistics from the last few batches: estimate them again over more images, as
 * prune does after distillation. Batches under FROZEN_BN_BELOW trained with the statistics frozen.
 */
async function reestimateBatchNorm(
  model: Model,
  run: UnlabelledRun,
  args: FinetuneArgs,
  runtime: RuntimeOptions,
): Promise<void> {
  const hasBatchNorm = [...model.graph.allNodes()].some((n) => n.opType === 'BatchNormalization');
  if (!hasBatchNorm || args.batch < FROZEN_BN_BELOW) return;
  await recalibrateBatchNorm(model, run.train, {
    spec: run.spec,
    batches: Math.max(1, Math.min(RECALIBRATION_BATCHES, Math.floor(run.train.length / args.batch))),
    batchSize: Math.min(args.batch, run.train.length),
    seed: args.seed,
    pooledVariance: args.batch < 16,
    runtime,
  });
}
