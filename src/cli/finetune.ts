import { escapeControl } from '../escape.js';
import fs from 'node:fs';
import path from 'node:path';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { checkOutput, noteInput, RunOutputs } from '../run-files.js';
import { checkSidecarOutputs, stageSidecars } from './sidecars.js';
import { checkModel, checkRuntimeAccepts, validateWritten } from '../runtime/preflight.js';
import {
  batchSize,
  checkNumbers,
  positiveInt,
  SAM_RADIUS,
  seed,
  threads,
  type NumberRule,
} from './numbers.js';
import { dataInputs } from '../analysis/cost.js';
import { hasLabels } from '../data/dataset.js';
import { openDataset } from '../data/open.js';
import { AUGMENTATIONS, resolveSpec, specForInput, type Augmentation } from '../data/preprocess.js';
import { balancedSubset } from '../data/subset.js';
import { UserError } from '../errors.js';
import type { Model } from '../ir/index.js';
import { loadModel } from '../ir/load.js';
import { INPUT_SHAPE_OPTION, imageInputDims, inputShapesFor } from './input-shape.js';
import { saveModel } from '../ir/save.js';
import { parseDevice } from '../runtime/device.js';
import { createProgress, type Progress } from '../runtime/progress.js';
import { DEFAULT_ADAMW_LR, OPTIMIZER_KINDS, withOptimizer, type OptimizerKind } from '../train/optimizer.js';
import { finetune } from '../train/loop.js';
import { finetuneUnlabelled } from './finetune-images.js';
import { finetuneTokens } from './finetune-tokens.js';
import { isTokenData } from './token-data.js';
import { SCHEDULE_KINDS, type ScheduleKind } from '../train/schedule.js';
import {
  DEFAULT_ALPHA,
  DEFAULT_DISTILL_GATE,
  DEFAULT_TEMPERATURE,
  DISTILL_GATES,
  type DistillGate,
} from '../train/step-graph.js';

export interface FinetuneArgs {
  model: string;
  inputShape?: string | string[];
  data: string;
  val?: string;
  output: string;
  epochs: number;
  batch: number;
  lr?: number;
  momentum: number;
  nesterov: boolean;
  optimizer: OptimizerKind;
  weightDecay: number;
  schedule: string;
  warmup: number;
  labelSmoothing: number;
  seed: number;
  limit?: number;
  valLimit?: number;
  augment: Augmentation;
  preset?: string;
  spec?: string;
  device: string;
  threads?: number;
  checkpoint?: string;
  resume: boolean;
  stopAfterEpoch?: number;
  teacher?: string;
  temperature?: number;
  alpha?: number;
  distillGate?: DistillGate;
  sam: number;
  json: boolean;
}

export const finetuneCommand: CommandModule<object, FinetuneArgs> = {
  command: 'finetune <model>',
  describe: 'Fine-tune a model through onnxruntime (SGD; the training step is compiled to an ONNX graph)',
  builder: (y: Argv) =>
    y
      .positional('model', {
        type: 'string',
        demandOption: true,
        describe: 'ONNX model (BatchNormalization kept or folded)',
      })
      .option('data', {
        type: 'string',
        demandOption: true,
        describe:
          'Training images: folder, .tar, IDX or CIFAR binary; or .jsonl token ids (without labels: --teacher)',
      })
      .option('val', {
        type: 'string',
        describe: 'Validation images; the best epoch is kept',
      })
      .option('output', {
        alias: 'o',
        type: 'string',
        demandOption: true,
        describe: 'Where to write the fine-tuned model',
      })
      .option('epochs', { type: 'number', default: 1, describe: 'Epochs to train' })
      .option('batch', {
        type: 'number',
        default: 128,
        describe: 'Batch size (an incomplete last batch is dropped)',
      })
      // No yargs default: token data distils at its own (finetune-tokens.ts).
      .option('lr', {
        type: 'number',
        describe: "Peak learning rate (default 0.01; on token data 0.001; prune's: 0.05; docs/finetune.md)",
      })
      .option('optimizer', {
        type: 'string',
        default: 'sgd',
        choices: OPTIMIZER_KINDS,
        describe: "Update rule (adamw: torch's AdamW, default lr 3e-4; docs/finetune.md)",
      })
      .option('momentum', { type: 'number', default: 0.9, describe: "SGD momentum (AdamW's beta1)" })
      .option('nesterov', {
        type: 'boolean',
        default: false,
        describe: "Nesterov momentum (prune's: on; docs/finetune.md)",
      })
      .option('weight-decay', { type: 'number', default: 5e-4, describe: 'On conv/linear weights only' })
      .option('schedule', {
        type: 'string',
        default: 'cosine',
        choices: SCHEDULE_KINDS,
        describe: 'Learning rate after the warm-up',
      })
      .option('warmup', { type: 'number', default: 0, describe: 'Linear warm-up, in epochs' })
      .option('label-smoothing', {
        type: 'number',
        default: 0,
        describe: 'Label smoothing of the cross-entropy (0: off)',
      })
      .option('seed', {
        type: 'number',
        default: 0,
        describe: 'Seed for shuffling, augmentation and subsets',
      })
      .option('limit', { type: 'number', describe: 'Train on a seeded class-balanced subset of N images' })
      .option('val-limit', {
        type: 'number',
        describe: 'Validate on a seeded class-balanced subset of N images',
      })
      .option('augment', {
        type: 'string',
        choices: AUGMENTATIONS,
        default: 'full',
        // `--no-augment` (false) and a bare `--augment` (true) keep their meaning from when this was a boolean.
        coerce: (v: string | boolean) => (v === false ? 'none' : v === true ? 'full' : v),
        describe: "Augmentation (prune's: flip; docs/finetune.md)",
      })
      .option('preset', { type: 'string', describe: 'Preprocessing preset (cifar10, fmnist, ...)' })
      .option('spec', { type: 'string', describe: 'Preprocessing spec JSON file' })
      .option('device', { type: 'string', default: 'cpu', describe: 'cpu, cuda or auto' })
      .option('threads', { type: 'number', describe: 'onnxruntime intra-op threads' })
      .option('checkpoint', {
        type: 'string',
        describe: 'Checkpoint file (default: OUTPUT.ckpt), written after every epoch',
      })
      .option('resume', { type: 'boolean', default: false, describe: 'Continue from the checkpoint' })
      .option('stop-after-epoch', {
        type: 'number',
        hidden: true,
        describe: 'Stop after this epoch, as if interrupted (tests --resume)',
      })
      .option('teacher', {
        type: 'string',
        describe: 'Distil from this model (typically the unpruned original); needed without labels',
      })
      // The distillation options have no yargs defaults so that one given without --teacher is an error, not ignored.
      .option('temperature', {
        type: 'number',
        describe: `With --teacher: softmax temperature (default ${DEFAULT_TEMPERATURE})`,
      })
      .option('alpha', {
        type: 'number',
        describe: `With --teacher: weight of the distillation term (default ${DEFAULT_ALPHA})`,
      })
      .option('distill-gate', {
        type: 'string',
        choices: DISTILL_GATES,
        describe: `With --teacher: the images it applies to (default ${DEFAULT_DISTILL_GATE})`,
      })
      .option('sam', {
        type: 'number',
        default: 0,
        describe: 'Sharpness-aware steps of this radius (0: off; about 2x the time)',
      })
      .option('input-shape', INPUT_SHAPE_OPTION)
      .option('json', {
        type: 'boolean',
        default: false,
        describe: 'Print the training history as JSON on stdout',
      }) as unknown as Argv<FinetuneArgs>,
  handler: async (args: ArgumentsCamelCase<FinetuneArgs>) => {
    checkNumbers(args, FINETUNE_NUMBERS);
    checkDistillationOptions(args);
    // A text model's token ids (src/cli/finetune-tokens.ts): distillation from --teacher, no labels.
    if (isTokenData(args.data)) return finetuneTokens(args);
    const model = loadModel(args.model);
    checkModel(model, args.model);
    const teacher = args.teacher !== undefined ? loadModel(args.teacher) : undefined;
    if (teacher) checkModel(teacher, args.teacher!);
    const resolved = resolveSpec({ preset: args.preset, specFile: args.spec, modelPath: args.model });
    const inputShapes = inputShapesFor(model, args.inputShape, args.model);
    const spec = specForInput(resolved.spec, imageInputDims(model, inputShapes), args.model);
    const train = await openDataset(args.data, { split: 'train', labels: 'optional' });
    const batch = trainingBatch(model, args.batch);
    // Images without labels train by distillation from --teacher (src/cli/finetune-images.ts).
    if (!hasLabels(train))
      return finetuneUnlabelled({ ...args, batch }, { model, teacher, train, spec, inputShapes });
    const val = args.val ? await openDataset(args.val, { split: 'test' }) : undefined;
    const checkpoint = args.checkpoint ?? `${args.output}.ckpt`;
    // The checkpoint is read on --resume and rewritten every epoch: it must be no other input, nor the output.
    checkOutput(checkpoint, 'checkpoint');
    if (args.resume && fs.existsSync(checkpoint)) noteInput(checkpoint, 'the checkpoint');
    checkOutput(args.output, 'model');
    checkSidecarOutputs(args.model, args.output);
    if (path.resolve(checkpoint) === path.resolve(args.output))
      throw new UserError('the checkpoint and the output model must be different files', checkpoint);
    await checkRuntimeAccepts(model, args.model, inputShapes);
    const valIndices =
      val && args.valLimit ? balancedSubset(val.labels, args.valLimit, args.seed) : undefined;
    let bar: Progress | undefined;
    const result = await finetune(model, train, {
      epochs: args.epochs,
      batchSize: batch,
      lr: args.lr ?? (args.optimizer === 'adamw' ? DEFAULT_ADAMW_LR : 0.01),
      spec,
      ...(inputShapes && { inputShapes }),
      schedule: { kind: args.schedule as ScheduleKind },
      warmupEpochs: args.warmup,
      sgd: withOptimizer(
        { momentum: args.momentum, nesterov: args.nesterov, weightDecay: args.weightDecay },
        args.optimizer,
      ),
      labelSmoothing: args.labelSmoothing,
      seed: args.seed,
      limit: args.limit,
      augment: args.augment,
      val,
      valIndices,
      device: parseDevice(args.device),
      threads: args.threads,
      checkpoint,
      resume: args.resume,
      stopAfterEpoch: args.stopAfterEpoch,
      sam: args.sam,
      teacher: teacher
        ? {
            model: teacher,
            temperature: args.temperature,
            alpha: args.alpha,
            // The CLI's gate default differs from the library's (`none`); temperature and alpha default there.
            gate: args.distillGate ?? DEFAULT_DISTILL_GATE,
          }
        : undefined,
      onStep: (p) => {
        if (p.step === 1) bar = createProgress(`epoch ${p.epoch}/${p.epochs}`, p.stepsPerEpoch);
        bar?.update(
          p.step,
          `loss ${p.loss.toFixed(4)} acc ${(100 * p.accuracy).toFixed(1)}% ${p.imagesPerSecond.toFixed(0)} img/s`,
        );
        if (p.step === p.stepsPerEpoch) bar?.stop();
      },
      onEpoch: (r) => {
        const val = r.valAccuracy !== undefined ? ` val ${(100 * r.valAccuracy).toFixed(2)}%` : '';
        process.stderr.write(
          `epoch ${r.epoch}: loss ${r.loss.toFixed(4)} train ${(100 * r.trainAccuracy).toFixed(2)}%${val} ${r.imagesPerSecond.toFixed(0)} img/s ${r.seconds.toFixed(1)} s\n`,
        );
      },
    });
    if (result.epochsDone < args.epochs) {
      process.stderr.write(`stopped after epoch ${result.epochsDone}; continue with --resume\n`);
      return;
    }
    // No written model may give non-finite outputs (a run resumed from bad statistics, a diverged one).
    await validateWritten(result.model, 'fine-tuned', inputShapes);
    const outputs = new RunOutputs();
    saveModel(result.model, args.output, { staged: outputs.staged });
    stageSidecars(outputs, args.model, args.output);
    outputs.commit();
    if (args.json)
      process.stdout.write(
        `${JSON.stringify({ output: args.output, best: result.best, history: result.history }, null, 2)}\n`,
      );
    else
      process.stderr.write(
        `wrote ${escapeControl(args.output)}${result.best ? ` (epoch ${result.best.epoch}, val ${(100 * result.best.accuracy).toFixed(2)}%)` : ''}\n`,
      );
  },
};

/** A model whose input fixes the batch trains at that batch, as prune's fine-tuning does, and says so. */
function trainingBatch(model: Model, asked: number): number {
  const dim = dataInputs(model)[0]?.shape?.[0];
  if (typeof dim !== 'number' || dim <= 0 || dim === asked) return asked;
  process.stderr.write(`the model's input fixes the batch at ${dim}: training runs in batches of ${dim}\n`);
  return dim;
}

/** Distillation options without a teacher would change nothing; say so rather than train without them. */
function checkDistillationOptions(args: FinetuneArgs): void {
  if (args.teacher !== undefined) return;
  const given = [
    args.temperature !== undefined && '--temperature',
    args.alpha !== undefined && '--alpha',
    args.distillGate !== undefined && '--distill-gate',
  ].filter(Boolean);
  if (given.length > 0)
    throw new UserError(
      `${given.join(', ')} ${given.length === 1 ? 'applies' : 'apply'} to distillation only: add --teacher MODEL, or drop ${given.length === 1 ? 'it' : 'them'}`,
    );
}

const FINETUNE_NUMBERS: Record<string, NumberRule> = {
  epochs: { int: true, min: 1, max: 1e6 },
  batch: batchSize,
  lr: { above: 0, max: 1e6 },
  momentum: { min: 0, below: 1 },
  weightDecay: { min: 0, max: 1 },
  warmup: { min: 0, max: 1e6 },
  labelSmoothing: { min: 0, below: 1 },
  seed,
  limit: positiveInt,
  valLimit: positiveInt,
  threads,
  stopAfterEpoch: { int: true, min: 0, max: 1e6 },
  sam: SAM_RADIUS,
  temperature: { above: 0, max: 1e6 },
  alpha: { min: 0, max: 1 },
};
