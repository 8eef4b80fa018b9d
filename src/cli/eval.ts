import { escapeControl } from '../escape.js';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { checkOutput, RunOutputs } from '../run-files.js';
import { checkSidecarOutputs, stageSidecars } from './sidecars.js';
import { checkModel, checkRuntimeAccepts, validateWritten } from '../runtime/preflight.js';
import { batchSize, checkNumbers, pixels, positiveInt, seed, threads, type NumberRule } from './numbers.js';
import { describeDataset, type Dataset } from '../data/dataset.js';
import { openDataset } from '../data/open.js';
import { PRESET_NAMES, resolveSpec, specForInput, type ResolvedSpec } from '../data/preprocess.js';
import { balancedSubset } from '../data/subset.js';
import type { Split } from '../data/cifar-binary.js';
import { UserError } from '../errors.js';
import { loadModel } from '../ir/load.js';
import { INPUT_SHAPE_OPTION, imageInputDims, inputShapesFor, parseInputShapes } from './input-shape.js';
import type { Model } from '../ir/model.js';
import { saveModel } from '../ir/save.js';
import { DEVICES, parseDevice } from '../runtime/device.js';
import { evaluate } from '../runtime/evaluate.js';
import { createProgress, type Progress } from '../runtime/progress.js';
import { recalibrateBatchNorm } from '../runtime/recalibrate.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { renderKeyValues } from '../report/table.js';
import { runTaskEval, wantsTaskEval } from '../tasks/cli.js';
import { TASK_NAMES } from '../tasks/types.js';
import { evalTokens } from './eval-tokens.js';
import { isTokenData } from './token-data.js';

/** Flags shared by the commands that read images (eval, recalibrate). */
export interface DataArgs {
  data: string;
  split?: string;
  preset?: string;
  spec?: string;
  mean?: string;
  std?: string;
  resize?: number;
  crop?: number;
  limit?: number;
  seed: number;
  batch?: number;
}

export interface RuntimeArgs {
  device: string;
  threads?: number;
}

export function withDataOptions<T>(y: Argv<T>, defaultSplit: Split, subsets = true): Argv<T & DataArgs> {
  const withData = y
    .option('data', {
      type: 'string',
      demandOption: true,
      describe: 'Images: a folder of class folders, a .tar of one, CIFAR .bin batches or IDX files',
    })
    .option('split', {
      type: 'string',
      choices: ['train', 'test'],
      describe: `Split to read (default ${defaultSplit})`,
    })
    .option('preset', { type: 'string', choices: PRESET_NAMES, describe: 'Preprocessing preset' })
    .option('spec', {
      type: 'string',
      describe: 'Preprocessing spec JSON (default: MODEL.preprocess.json if present)',
    })
    .option('mean', {
      type: 'string',
      describe: 'Per-channel mean after scaling to [0,1], e.g. 0.485,0.456,0.406',
    })
    .option('std', { type: 'string', describe: 'Per-channel std, e.g. 0.229,0.224,0.225' })
    .option('resize', { type: 'number', describe: 'Resize the shorter side to N pixels' })
    .option('crop', { type: 'number', describe: 'Center crop to NxN pixels' })
    .option('seed', { type: 'number', default: 0, describe: 'Seed for subsets, sampling and augmentation' });
  const withLimit = subsets
    ? withData.option('limit', {
        type: 'number',
        describe: 'Use a seeded, class-balanced subset of N images',
      })
    : withData;
  return withLimit as unknown as Argv<T & DataArgs>;
}

export function withRuntimeOptions<T>(y: Argv<T>): Argv<T & RuntimeArgs> {
  return y
    .option('device', {
      type: 'string',
      default: 'cpu',
      choices: DEVICES,
      describe: 'Execution provider',
    })
    .option('threads', {
      type: 'number',
      describe: 'Intra-op threads (default: one per physical core)',
    }) as unknown as Argv<T & RuntimeArgs>;
}

export function runtimeFromArgs(args: RuntimeArgs): RuntimeOptions {
  return { device: parseDevice(args.device), ...(args.threads !== undefined && { threads: args.threads }) };
}

/** The preprocessing spec from --preset/--spec/MODEL.preprocess.json with flag overrides. */
export function specFromArgs(args: DataArgs, modelPath: string): ResolvedSpec {
  return resolveSpec({
    ...(args.preset !== undefined && { preset: args.preset }),
    ...(args.spec !== undefined && { specFile: args.spec }),
    modelPath,
    meanStdFlags: true,
    ...(args.mean !== undefined && { mean: parseNumberList(args.mean, '--mean') }),
    ...(args.std !== undefined && { std: parseNumberList(args.std, '--std') }),
    ...(args.resize !== undefined && { resize: args.resize }),
    ...(args.crop !== undefined && { crop: args.crop }),
  });
}

/** `letterbox`/`stretch` fit images to the model's input: its H x W (or --input-shape's) become the spec's size. */
function fittedSpec(
  resolved: ResolvedSpec,
  modelPath: string,
  inputShape: string | string[] | undefined,
  model?: Model,
): ResolvedSpec {
  if (typeof resolved.spec.resize !== 'string' || resolved.spec.size) return resolved;
  const m = model ?? loadModel(modelPath);
  const dims = imageInputDims(m, inputShapesFor(m, inputShape, modelPath));
  return { ...resolved, spec: specForInput(resolved.spec, dims, modelPath) };
}

/** Opens the data and, with --limit, picks the balanced subset. */
export async function datasetFromArgs(
  args: DataArgs,
  defaultSplit: Split,
): Promise<{ dataset: Dataset; indices?: Int32Array }> {
  const dataset = await openDataset(args.data, { split: (args.split as Split | undefined) ?? defaultSplit });
  if (args.limit === undefined) return { dataset };
  if (!(Number.isInteger(args.limit) && args.limit > 0))
    throw new UserError(`--limit must be a positive integer, not ${args.limit}`);
  return { dataset, indices: balancedSubset(dataset.labels, args.limit, args.seed) };
}

function parseNumberList(text: string, flag: string): number[] {
  const values = text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map(Number);
  if (values.length === 0 || values.some((v) => !Number.isFinite(v))) {
    throw new UserError(`${flag} must be numbers separated by commas, not '${text}'`);
  }
  return values;
}

/** The numeric flags of withDataOptions, withRuntimeOptions and --batch. */
const DATA_NUMBERS: Record<string, NumberRule> = {
  resize: pixels,
  crop: pixels,
  limit: positiveInt,
  seed,
  batch: batchSize,
  threads,
};

/** eval feeds one image input: its `--input-shape` is one shape, without a name. */
function singleInputShape(option: string | string[]): number[] {
  const shape = parseInputShapes(option);
  if (!Array.isArray(shape)) throw new UserError('eval takes one --input-shape, without an input name');
  return shape;
}

const percent = (fraction: number) => `${(100 * fraction).toFixed(2)}%`;

interface EvalArgs extends DataArgs, RuntimeArgs {
  model: string;
  inputShape?: string | string[];
  json: boolean;
  task?: string;
  layout?: string;
  against?: string;
}

export const evalCommand: CommandModule<object, EvalArgs> = {
  command: 'eval <model>',
  describe:
    'Measure a model on images: top-1/top-5 of a classifier, --task detect/segment/dense, or fidelity to the original (--against)',
  builder: (y) =>
    withRuntimeOptions(
      withDataOptions(
        y.positional('model', { type: 'string', demandOption: true, describe: 'ONNX model' }),
        'test',
      ),
    )
      .option('batch', {
        type: 'number',
        describe: 'Images per onnxruntime run (default 256; 16 for detect, segment and dense)',
      })
      .option('input-shape', INPUT_SHAPE_OPTION)
      .option('task', {
        type: 'string',
        choices: TASK_NAMES,
        describe: 'What the model does (default: from MODEL.layout.json or the output shape); docs/tasks.md',
      })
      .option('layout', {
        type: 'string',
        describe: 'Output-layout JSON: which output is what (default: MODEL.layout.json if present)',
      })
      .option('against', {
        type: 'string',
        describe:
          "The original model: the task's metric with its outputs as the reference (fidelity, no labels)",
      })
      .option('json', {
        type: 'boolean',
        default: false,
        describe: 'Print one JSON object instead of text',
      }) as unknown as Argv<EvalArgs>,
  handler: async (args: ArgumentsCamelCase<EvalArgs>) => {
    checkNumbers(args, DATA_NUMBERS);
    // A text model's token ids (src/cli/eval-tokens.ts): no preprocessing, fidelity or labels from the file.
    if (isTokenData(args.data))
      return void process.stdout.write(await evalTokens(args, runtimeFromArgs(args)));
    const preprocessing = fittedSpec(specFromArgs(args, args.model), args.model, args.inputShape);
    if (wantsTaskEval(args)) return evalTask(args, preprocessing);
    const { dataset, indices } = await datasetFromArgs(args, 'test');
    let progress: Progress | undefined; // started by the first batch, so a failed model load prints no bar
    let result;
    try {
      result = await evaluate(args.model, dataset, {
        spec: preprocessing.spec,
        batchSize: args.batch ?? 256,
        runtime: runtimeFromArgs(args),
        ...(indices && { indices }),
        ...(args.inputShape !== undefined && { inputShape: singleInputShape(args.inputShape) }),
        onProgress: (done, total, correct) =>
          (progress ??= createProgress('eval', total)).update(done, `top-1 ${percent(correct / done)}`),
      });
    } finally {
      progress?.stop();
    }
    if (args.json) {
      const report = {
        data: {
          ...describeDataset(dataset),
          split: args.split ?? 'test',
          limit: args.limit ?? null,
          seed: args.seed,
        },
        preprocessing,
        ...result,
      };
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return;
    }
    const text = renderKeyValues([
      ['model', args.model],
      [
        'data',
        `${dataset.path} (${dataset.kind}, ${result.n} images${indices ? ', a balanced subset' : ''}, ${dataset.classNames.length} classes)`,
      ],
      ['preprocessing', preprocessing.source],
      ['top-1', `${percent(result.top1)} (${result.correctTop1}/${result.n})`],
      [`top-${result.topK}`, `${percent(result.top5)} (${result.correctTop5}/${result.n})`],
      [
        'speed',
        `${result.imagesPerSecond.toFixed(0)} images/s (${result.seconds.toFixed(1)} s, ${result.device}, batch ${result.batchSize})`,
      ],
    ]);
    process.stdout.write(`${text}\n`);
  },
};

/** eval --task/--layout/--against: detection, segmentation and dense maps, or fidelity to the original. */
async function evalTask(args: ArgumentsCamelCase<EvalArgs>, preprocessing: ResolvedSpec): Promise<void> {
  let progress: Progress | undefined;
  try {
    const text = await runTaskEval({
      model: args.model,
      data: args.data,
      split: (args.split as Split | undefined) ?? 'test',
      seed: args.seed,
      json: args.json,
      preprocessing,
      runtime: runtimeFromArgs(args),
      ...(args.task !== undefined && { task: args.task }),
      ...(args.layout !== undefined && { layout: args.layout }),
      ...(args.against !== undefined && { against: args.against }),
      ...(args.limit !== undefined && { limit: args.limit }),
      ...(args.batch !== undefined && { batch: args.batch }),
      ...(args.inputShape !== undefined && { inputShape: singleInputShape(args.inputShape) }),
      openClassData: () => datasetFromArgs(args, 'test'),
      onProgress: (done, total) => (progress ??= createProgress('eval', total)).update(done),
    });
    progress?.stop();
    progress = undefined;
    process.stdout.write(text);
  } finally {
    progress?.stop();
  }
}

interface RecalibrateArgs extends DataArgs, RuntimeArgs {
  model: string;
  inputShape?: string | string[];
  output: string;
  batches: number;
  augment: boolean;
  json: boolean;
}

export const recalibrateCommand: CommandModule<object, RecalibrateArgs> = {
  command: 'recalibrate <model>',
  describe: "Re-estimate every BatchNormalization's running mean/variance from training images (adaptive BN)",
  builder: (y) =>
    withRuntimeOptions(
      withDataOptions(
        y.positional('model', { type: 'string', demandOption: true, describe: 'ONNX model with BN' }),
        'train',
        false,
      ),
    )
      .option('output', {
        alias: 'o',
        type: 'string',
        demandOption: true,
        describe: 'Where to write the model',
      })
      .option('batches', {
        type: 'number',
        default: 20,
        describe: 'K: batches of training images to average over',
      })
      .option('batch', { type: 'number', default: 128, describe: 'Images per batch' })
      .option('input-shape', INPUT_SHAPE_OPTION)
      .option('augment', {
        type: 'boolean',
        default: true,
        describe: "Use the spec's training augmentation, as training did (--no-augment: plain preprocessing)",
      })
      .option('json', {
        type: 'boolean',
        default: false,
        describe: 'Print one JSON object instead of text',
      }) as unknown as Argv<RecalibrateArgs>,
  handler: async (args: ArgumentsCamelCase<RecalibrateArgs>) => {
    checkNumbers(args, { ...DATA_NUMBERS, batches: positiveInt });
    const resolved = specFromArgs(args, args.model);
    const model = loadModel(args.model);
    checkModel(model, args.model);
    const preprocessing = fittedSpec(resolved, args.model, args.inputShape, model);
    // Recalibration reads images only: a folder of images without class subfolders will do.
    const split = (args.split as Split | undefined) ?? 'train';
    const dataset = await openDataset(args.data, { split, labels: 'optional' });
    checkOutput(args.output, 'model');
    checkSidecarOutputs(args.model, args.output);
    const inputShapes = inputShapesFor(model, args.inputShape, args.model);
    await checkRuntimeAccepts(model, args.model, inputShapes);
    let progress: Progress | undefined;
    let result;
    try {
      result = await recalibrateBatchNorm(model, dataset, {
        spec: preprocessing.spec,
        batches: args.batches,
        batchSize: args.batch ?? 128,
        seed: args.seed,
        augment: args.augment,
        runtime: runtimeFromArgs(args),
        onProgress: (done, total) => (progress ??= createProgress('recalibrate', total)).update(done),
      });
    } finally {
      progress?.stop();
    }
    await validateWritten(model, 'recalibrated', inputShapes);
    const outputs = new RunOutputs();
    saveModel(model, args.output, { staged: outputs.staged });
    stageSidecars(outputs, args.model, args.output);
    outputs.commit();
    if (args.json) {
      const report = {
        output: args.output,
        data: { ...describeDataset(dataset), split: args.split ?? 'train', seed: args.seed },
        preprocessing,
        augment: args.augment,
        ...result,
      };
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return;
    }
    process.stdout.write(
      `wrote ${escapeControl(args.output)}: ${result.layers} BatchNormalization layers recalibrated from ${result.images} images ` +
        `(${result.batches} batches, ${result.seconds.toFixed(1)} s)\n`,
    );
  },
};
