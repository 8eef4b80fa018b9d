import { dataInputs } from '../analysis/cost.js';
import type { AnyDataset, UnlabelledDataset } from '../data/dataset.js';
import { openDataset } from '../data/open.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { UserError } from '../errors.js';
import { serializeModel, type Model } from '../ir/index.js';
import { saveModel } from '../ir/save.js';
import { checkOutput, RunOutputs } from '../run-files.js';
import { parseDevice } from '../runtime/device.js';
import { FidelityJudge } from '../runtime/fidelity.js';
import { checkRuntimeAccepts, validateWritten } from '../runtime/preflight.js';
import { recalibrateBatchNorm } from '../runtime/recalibrate.js';
import { DEFAULT_DISTILL_LR_BATCHED } from '../pipeline/defaults.js';
import { distillFromOriginal, FROZEN_BN_BELOW } from '../train/distill.js';
import { distillOptionsOf, fidelitySubset, reportDistillation } from './distil-cli.js';
import type { FinetuneArgs } from './finetune.js';
import { checkSidecarOutputs, stageSidecars } from './sidecars.js';

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
  sameImageInput(run.model, teacher, args.teacher!);
  const val =
    args.val !== undefined ? await openDataset(args.val, { split: 'test', labels: 'optional' }) : undefined;
  checkOutput(args.output, 'model');
  checkSidecarOutputs(args.model, args.output);
  await checkRuntimeAccepts(run.model, args.model, run.inputShapes);
  const runtime = {
    device: parseDevice(args.device),
    ...(args.threads !== undefined && { threads: args.threads }),
  };
  const judge =
    val && new FidelityJudge(serializeModel(teacher), val, fidelityOptions(val, args, run.spec, runtime));
  const before = judge && 1 - (await judge.score(serializeModel(run.model))).error;
  const result = await distillFromOriginal(run.model, teacher, run.train, {
    ...distillOptionsOf(args, DEFAULT_DISTILL_LR_BATCHED),
    spec: run.spec,
    ...(run.inputShapes && { inputShapes: run.inputShapes }),
    ...runtime,
  });
  await reestimateBatchNorm(result.model, run, args, runtime);
  const after = judge && 1 - (await judge.score(serializeModel(result.model))).error;
  await validateWritten(result.model, 'fine-tuned', run.inputShapes);
  const outputs = new RunOutputs();
  saveModel(result.model, args.output, { staged: outputs.staged });
  stageSidecars(outputs, args.model, args.output);
  outputs.commit();
  reportDistillation(
    args,
    result.history,
    before !== undefined && after !== undefined ? { before, after } : undefined,
  );
}

function requireTeacher(args: FinetuneArgs, teacher: Model | undefined): Model {
  if (teacher) return teacher;
  throw new UserError(
    'these images have no labels: give --teacher ORIGINAL.onnx to distil from the original, or labelled images (one subfolder per class)',
    args.data,
  );
}

/**
 * The teacher is fed the same batches as the model: its image input must take them (the same name and rank, and
 * no fixed size the model's does not have), and it must have as many outputs to match.
 */
function sameImageInput(model: Model, teacher: Model, file: string): void {
  const [mine, theirs] = [dataInputs(model)[0], dataInputs(teacher)[0]];
  const show = (dims: readonly unknown[] | undefined) => `[${(dims ?? []).join(', ')}]`;
  const fits =
    mine !== undefined &&
    theirs !== undefined &&
    mine.name === theirs.name &&
    mine.shape?.length === theirs.shape?.length &&
    (theirs.shape ?? []).every((d, i) => typeof d !== 'number' || d === mine.shape?.[i]);
  if (!fits)
    throw new UserError(
      `takes the input ${theirs?.name ?? '(none)'} ${show(theirs?.shape)}, where the model takes ${mine?.name ?? '(none)'} ${show(mine?.shape)}: the teacher is fed the model's batches`,
      file,
    );
  const [ours, its] = [model.graph.outputs.length, teacher.graph.outputs.length];
  if (ours !== its)
    throw new UserError(
      `has ${its} outputs where the model has ${ours}: each output is matched to the teacher's`,
      file,
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
  runtime: { device?: ReturnType<typeof parseDevice>; threads?: number },
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

function fidelityOptions(
  val: AnyDataset,
  args: FinetuneArgs,
  spec: PreprocessSpec,
  runtime: { device?: ReturnType<typeof parseDevice>; threads?: number },
) {
  const indices = fidelitySubset(val.length, args.valLimit, args.seed);
  // The training batch: the model's own where its input fixes it (trainingBatch in finetune.ts).
  return { spec, runtime, batchSize: args.batch, ...(indices && { indices }) };
}
