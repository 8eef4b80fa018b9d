import { escapeControl } from '../escape.js';
import path from 'node:path';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { openDataset } from '../data/open.js';
import { AUGMENTATIONS, resolveSpec, specForInput, type Augmentation } from '../data/preprocess.js';
import type { Dim } from '../ir/types.js';
import { UserError } from '../errors.js';
import { loadModel, saveModel, type Model } from '../ir/index.js';
import { needsExternalData } from '../ir/save.js';
import { PassManager } from '../passes/pass-manager.js';
import {
  DEFAULT_DISTILL,
  DEFAULT_FINETUNE_FROM,
  DEFAULT_PRUNE_AUGMENT,
  DEFAULT_PRUNE_NESTEROV,
  FINETUNE_STARTS,
  KEEP_STAGES,
  SPEED_CHECKS,
  adaPrune,
  type AdaPruneResult,
  type FinetuneStart,
  type KeepStage,
  type SpeedCheck,
} from '../pipeline/adaprune.js';
import { PruneLog, renderRunSummary, renderTimings } from './prune-summary.js';
import { groupOptions } from './option-groups.js';
import { DEFAULT_DISTILL_GATE, DISTILL_GATES, type DistillGate } from '../train/step-graph.js';
import {
  type CompensationScope,
  CRITERIA,
  WIDTH_SOURCES,
  parseCriterion,
  readPlanFile,
  type Criterion,
  type PruneReport,
  type WidthSource,
} from '../prune/index.js';
import { checkOutput, RunOutputs } from '../run-files.js';
import { reportPaths, writeReports } from '../report/index.js';
import { checkModel, checkRuntimeAccepts } from '../runtime/preflight.js';
import { prepareValidation, type PreparedValidation } from '../runtime/validate.js';
import { probeInputDims } from '../shapes/probe.js';
import { collectGarbage } from '../ir/loaded-file.js';
import { INPUT_SHAPE_OPTION, imageInputDims, inputShapesFor } from './input-shape.js';
import { OPTIMIZER_KINDS, withOptimizer, type OptimizerKind } from '../train/optimizer.js';
import { OUTPUT_KINDS, type OutputKind } from '../train/distill.js';
import {
  batchSize,
  checkNumbers,
  count,
  fraction,
  positiveInt,
  SAM_RADIUS,
  seed,
  threads,
  type NumberRule,
} from './numbers.js';
import { formatCount, formatPercent, renderKeyValues, renderTable, speedup } from '../report/table.js';
import { parseDevice } from '../runtime/device.js';
import { createProgress, type Progress } from '../runtime/progress.js';
import { labelOfValueName, summarizeReasons } from '../report/module-names.js';
import { candidateTaskColumn, measureLabels, taskColumns } from '../report/measure.js';
import { layoutBesideModel, openTaskData, PRUNE_TASK_OPTIONS, wantsPruneTask } from './prune-task.js';
import { isTokenData, openTokenPruneData } from './token-data.js';
import { checkSidecarOutputs, stageSidecars } from './sidecars.js';

interface PruneArgs {
  model: string;
  outputKind?: string[];
  inputShape?: string | string[];
  output?: string;
  flops?: number;
  params?: number;
  latency?: number;
  latencyBatch: number;
  measureLatency: boolean;
  speedCheck: string;
  criterion?: string;
  uniform: boolean;
  roundTo?: number;
  minChannels?: number;
  minFraction: number;
  torchCompatible: boolean;
  seed: number;
  planOut?: string;
  planIn?: string;
  dryRun: boolean;
  validate: boolean;
  json: boolean;
  timings: boolean;
  debug: boolean;
  data?: string;
  val?: string;
  valLimit?: number;
  preset?: string;
  spec?: string;
  task?: string;
  layout?: string;
  calibrationImages?: number;
  recalBatches: number;
  recalBatchSize?: number;
  finetuneEpochs?: number;
  finetuneLr?: number;
  finetuneNesterov: boolean;
  finetuneSam: number;
  finetuneBatch?: number;
  finetuneLimit?: number;
  finetuneAugment: string;
  distill: boolean;
  distillGate?: DistillGate;
  finetuneFrom: string;
  widths?: string;
  widthTrials?: number;
  compensate: boolean;
  compensateScope?: string;
  device: string;
  threads?: number;
  report: boolean;
  externalData: boolean;
  keepStage: KeepStage;
  verbose: boolean;
}

export const pruneCommand: CommandModule<object, PruneArgs> = {
  command: 'prune <model>',
  describe: 'Prune channels to a MAC, parameter or latency budget; with --data, the whole AdaPruner pipeline',
  builder: (y) =>
    groupOptions(dataOptions(budgetOptions(y)), PRUNE_GROUPS, PRUNE_EXPERT) as unknown as Argv<PruneArgs>,
  handler: async (argv: ArgumentsCamelCase<PruneArgs>) => {
    // Progress always goes to stderr, so --json keeps stdout to the one summary object.
    const progress = new PruneLog(argv.verbose);
    const say = (line: string): void => progress.line(line);
    checkNumbers(argv, PRUNE_NUMBERS);
    const budgets = [argv.flops, argv.params, argv.latency].filter((b) => b !== undefined).length;
    if (budgets > 1) throw new UserError('give one budget: --flops, --params or --latency, not several');
    if (budgets === 0 && !argv.planIn)
      throw new UserError('give a budget (--flops R, --params R or --latency R) or a plan (--plan-in FILE)');
    if (!argv.dryRun && !argv.output)
      throw new UserError('name the output file with -o OUT (or use --dry-run)');
    if (argv.distillGate !== undefined && !argv.distill)
      throw new UserError('--distill-gate applies to distillation only: add --distill, or drop it');
    const pm = new PassManager({ timings: argv.timings, debug: argv.debug });
    const model = pm.time('load', () => loadModel(argv.model));
    checkModel(model, argv.model);
    const givenShapes = inputShapesFor(model, argv.inputShape, argv.model);
    const plan = argv.planIn ? readPlanFile(argv.planIn) : undefined;
    if (wantsPruneTask(argv) && !argv.data)
      throw new UserError('--task measures every stage on images: give --data (labels beside them optional)');
    // Token data (a text model's ids, src/cli/token-data.ts) also gives the sequence length every stage runs at.
    const tokens =
      argv.data && isTokenData(argv.data) ? await openTokenPruneData(argv, model, givenShapes) : undefined;
    const inputShapes = tokens?.inputShapes ?? givenShapes;
    const data =
      tokens?.data ??
      (argv.data ? await openData(argv, model, imageInputDims(model, inputShapes)) : undefined);
    // Every output is checked before the work (never an input, its folder exists) and written at the end.
    if (argv.planOut) checkOutput(argv.planOut, 'plan');
    const large = needsExternalData(model);
    if (!argv.dryRun) {
      checkOutput(argv.output!, 'model');
      if (argv.externalData || large) checkOutput(`${argv.output!}.data`, 'external data');
      if (argv.report) for (const f of reportPaths(argv.output!)) checkOutput(f, 'report');
      checkSidecarOutputs(argv.model, argv.output!);
    }
    // onnxruntime takes a model as bytes only up to protobuf's 2 GiB: a larger one is checked structurally.
    if (large)
      say(
        'the model is over 2 GiB: checked by the IR verifier only (onnxruntime cannot load it from memory); weights go to OUT.data',
      );
    else await checkRuntimeAccepts(model, argv.model, inputShapes);
    let bar: Progress | undefined;
    // The model written is validated here, from its staged file, once its weights are out of memory.
    const validateWritten = argv.validate && !large && !argv.dryRun;
    const result: Omit<AdaPruneResult, 'model'> & { model?: Model } = await adaPrune(model, {
      flops: argv.flops,
      params: argv.params,
      latency: argv.latency,
      latencyBatch: argv.latencyBatch,
      measureLatency: argv.measureLatency && !large,
      speedCheck: argv.speedCheck as SpeedCheck,
      criterion:
        argv.criterion === undefined
          ? undefined
          : argv.criterion === 'auto'
            ? 'auto'
            : parseCriterion(argv.criterion),
      uniform: argv.uniform,
      widths: argv.widths as WidthSource | 'search' | undefined,
      widthTrials: argv.widthTrials,
      roundTo: argv.roundTo,
      minChannels: argv.minChannels,
      minFraction: argv.minFraction,
      torchCompatible: argv.torchCompatible,
      inputShapes,
      seed: argv.seed,
      plan,
      planSource: argv.planIn,
      data,
      compensate: argv.compensate,
      compensationScope: argv.compensateScope as CompensationScope | undefined,
      finetune: {
        epochs: argv.finetuneEpochs,
        lr: argv.finetuneLr,
        batchSize: argv.finetuneBatch,
        limit: argv.finetuneLimit,
        augment: argv.finetuneAugment as Augmentation,
        sgd: withOptimizer({ nesterov: argv.finetuneNesterov }, argv.finetuneOptimizer as OptimizerKind),
        sam: argv.finetuneSam,
        distill: argv.distill,
        distillGate: argv.distillGate,
        from: argv.finetuneFrom as FinetuneStart,
      },
      runtime: { device: parseDevice(argv.device), threads: argv.threads },
      dryRun: argv.dryRun,
      validate: argv.validate && !large && !validateWritten,
      passManager: pm,
      keepStage: argv.keepStage,
      log: progress.log,
      warn: progress.warn,
      onFinetuneStep: (p) => {
        if (p.step === 1) progress.clear();
        if (p.step === 1) bar = createProgress(`fine-tune epoch ${p.epoch}/${p.epochs}`, p.stepsPerEpoch);
        bar?.update(
          p.step,
          `loss ${p.loss.toFixed(4)}${Number.isNaN(p.accuracy) ? '' : ` acc ${(100 * p.accuracy).toFixed(1)}%`} ${p.imagesPerSecond.toFixed(0)} img/s`,
        );
        if (p.step === p.stepsPerEpoch) bar?.stop();
      },
    });
    const outputs = new RunOutputs();
    if (argv.planOut) outputs.write(argv.planOut, `${JSON.stringify(result.plan, null, 1)}\n`, 'plan');
    const files: string[] = argv.planOut ? [argv.planOut] : [];
    if (!argv.dryRun) {
      const external =
        argv.externalData || large ? { location: `${path.basename(argv.output!)}.data` } : undefined;
      const pruned = result.model!;
      const check = validateWritten
        ? prepareValidation(pruned, probeInputDims(pruned, inputShapes))
        : undefined;
      pm.time('save', () =>
        saveModel(pruned, argv.output!, { staged: outputs.staged, externalData: external }),
      );
      if (check) await validateStaged(check, outputs, argv.output!, result, pm);
      files.push(argv.output!);
      result.report.output = argv.output!;
      if (argv.report)
        files.push(
          ...writeReports(result.report, argv.output!, (f, text) => outputs.write(f, text, 'report')),
        );
      files.push(...stageSidecars(outputs, argv.model, argv.output!));
    }
    outputs.commit();
    if (argv.json) {
      console.log(
        JSON.stringify(
          { ...result.core, pipeline: result.report, skipped: result.skipped, files, timings: pm.timings },
          null,
          1,
        ),
      );
      for (const w of progress.warnings) say(`adapruner: warning: ${w}`);
      progress.close();
      return;
    }
    progress.clear();
    progress.close();
    if (argv.verbose) console.log(`${escapeControl(renderSummary(result), true)}\n`);
    if (argv.timings) console.log(`${escapeControl(renderTimings(result), true)}\n`);
    console.log(escapeControl(renderRunSummary(result, files, progress.warnings), true));
    // One line, worded so that test-runner and CI logs never mistake it for a skipped-test count.
    if (result.skipped.length) say(`not run: ${result.skipped.join('; ')}`);
  },
};

/**
 * Validates the staged model file; the result's model is dropped first, so onnxruntime's copy of the weights is
 * the only one in memory (the peak of a prune). A failure removes the staged files: nothing is written.
 */
async function validateStaged(
  check: PreparedValidation,
  outputs: RunOutputs,
  file: string,
  result: { model?: Model },
  pm: PassManager,
): Promise<void> {
  delete result.model;
  collectGarbage();
  const started = performance.now();
  try {
    await check.run(outputs.staged.stagedAt(file)!);
  } catch (e) {
    outputs.abort();
    throw e;
  } finally {
    pm.timings.push({ pass: 'validate', ms: performance.now() - started });
  }
}

async function openData(
  argv: PruneArgs,
  model: Model,
  inputDims: readonly Dim[] | undefined,
): Promise<NonNullable<Parameters<typeof adaPrune>[1]['data']>> {
  const resolved = resolveSpec({ preset: argv.preset, specFile: argv.spec, modelPath: argv.model });
  const spec = specForInput(resolved.spec, inputDims, argv.model);
  // --task: task folders (or plain images) whose labels give each stage's task metric (src/cli/prune-task.ts).
  const task =
    wantsPruneTask(argv) || layoutBesideModel(argv)
      ? await openTaskData(model, { ...argv, data: argv.data! })
      : undefined;
  // Without labels the pipeline scores by fidelity to the original and distils from it (src/pipeline/label-free.ts).
  const train = task?.train ?? (await openDataset(argv.data!, { split: 'train', labels: 'optional' }));
  const val =
    task?.val ??
    (argv.val && !task ? await openDataset(argv.val, { split: 'test', labels: 'optional' }) : undefined);
  return {
    ...(task && { task: task.task }),
    train,
    val,
    valLimit: argv.valLimit,
    spec,
    calibrationImages: argv.calibrationImages,
    recalibrationBatches: argv.recalBatches,
    recalibrationBatchSize: argv.recalBatchSize,
    ...(argv.outputKind && { outputKinds: argv.outputKind.map((k) => k as OutputKind) }),
  };
}

const PRUNE_NUMBERS: Record<string, NumberRule> = {
  flops: fraction,
  params: fraction,
  latency: fraction,
  latencyBatch: batchSize,
  roundTo: { int: true, min: 1, max: 4096 },
  widthTrials: { int: true, min: 0, max: 1000 },
  minChannels: positiveInt,
  minFraction: { min: 0, max: 1 },
  seed,
  valLimit: positiveInt,
  calibrationImages: count,
  recalBatches: count,
  recalBatchSize: batchSize,
  finetuneEpochs: { int: true, min: 0, max: 1e6 },
  finetuneLr: { above: 0, max: 1e6 },
  finetuneBatch: batchSize,
  finetuneLimit: positiveInt,
  finetuneSam: SAM_RADIUS,
  threads,
};

/** `--verbose`: the group table, totals, the candidates compared, and accuracy by stage when there was data. */
export function renderSummary(result: Omit<AdaPruneResult, 'model'>): string {
  const parts = [
    renderReport(
      result.core,
      result.report.groups.map((g) => g.label),
    ),
  ];
  const r = result.report;
  if (r.before.latencyMs !== undefined && r.after.latencyMs !== undefined)
    parts.push(
      renderKeyValues([
        [
          'latency',
          `${r.before.latencyMs.toFixed(3)} ms -> ${r.after.latencyMs.toFixed(3)} ms (${speedup(r.before.latencyMs, r.after.latencyMs)})`,
        ],
      ]),
    );
  if (r.criteria.length)
    parts.push(
      renderTable(
        [
          'criterion',
          'widths',
          { header: `proxy ${measureLabels(r).score}`, align: 'right' },
          { header: 'proxy loss', align: 'right' },
          ...candidateTaskColumn(r).headers.map((header) => ({ header, align: 'right' as const })),
          'chosen',
        ],
        r.criteria.map((c) => [
          c.criterion,
          c.widths ?? '',
          formatPercent(c.top1),
          c.loss.toFixed(4),
          ...candidateTaskColumn(r).cells(c),
          c.chosen ? '*' : '',
        ]),
      ),
    );
  if (r.accuracy.length)
    parts.push(
      renderTable(
        [
          'stage',
          { header: measureLabels(r).score, align: 'right' },
          { header: measureLabels(r).loss, align: 'right' },
          ...taskColumns(r).headers.map((header) => ({ header, align: 'right' as const })),
          { header: 'images', align: 'right' },
        ],
        r.accuracy.map((a) => [
          a.stage,
          formatPercent(a.top1),
          a.loss?.toFixed(4) ?? '',
          ...taskColumns(r).cells(a),
          a.images,
        ]),
      ),
    );
  return parts.join('\n\n');
}

/** `labels`: module paths per group (from the pipeline's report); else read off the anchors' scopes. */
export function renderReport(r: PruneReport, labels?: readonly string[]): string {
  const table = renderTable(
    [
      'group',
      'module',
      { header: 'members', align: 'right' },
      { header: 'before', align: 'right' },
      { header: 'after', align: 'right' },
      { header: 'importance', align: 'right' },
      'frozen',
    ],
    r.groups.map((g, i) => [
      g.id,
      labels?.[i] ?? labelOfValueName(g.anchor),
      g.members,
      g.before,
      g.after,
      g.importance.toFixed(3),
      summarizeReasons(g.frozen),
    ]),
  );
  const kv: [string, string][] = [
    ['criterion', r.criterion],
    ['importance', r.importanceSource === 'bn' ? 'mean |BN gamma|' : 'filter norm (no BN)'],
    [
      'MACs',
      `${formatCount(r.original.macs)} -> ${formatCount(r.pruned.macs)} (${formatPercent(r.pruned.macs / r.original.macs)})`,
    ],
    [
      'params',
      `${formatCount(r.original.params)} -> ${formatCount(r.pruned.params)} (${formatPercent(r.pruned.params / r.original.params)})`,
    ],
  ];
  if (r.search)
    kv.push([
      'search',
      `${r.search.steps} bisection steps, ${r.search.msPerStep.toFixed(3)} ms/step, ${r.search.fillSteps} fill steps`,
    ]);
  return `${table}\n\n${renderKeyValues(kv)}`;
}

export type { Criterion };

/** The model, the output and the data-free decision: budget, widths, criterion, plan. */
function budgetOptions<T>(y: Argv<T>) {
  return y
    .positional('model', { type: 'string', demandOption: true, describe: 'ONNX file (never modified)' })
    .option('output', {
      alias: 'o',
      type: 'string',
      requiresArg: true,
      describe: 'Where to write the pruned model (whole or not at all)',
    })
    .option('flops', {
      type: 'number',
      requiresArg: true,
      describe: 'Keep this fraction of the MACs, e.g. 0.5',
    })
    .option('params', {
      type: 'number',
      requiresArg: true,
      describe: 'Keep this fraction of the parameters',
    })
    .option('latency', {
      type: 'number',
      requiresArg: true,
      describe: 'Keep this fraction of the latency measured here',
    })
    .option('latency-batch', { type: 'number', default: 1, describe: 'Batch size latency is measured at' })
    .option('measure-latency', {
      type: 'boolean',
      default: false,
      describe: 'Time the original and the result (report only)',
    })
    .option('speed-check', {
      type: 'string',
      choices: SPEED_CHECKS,
      default: 'static',
      describe: 'How roundings are judged: static table or measured retry',
    })
    .option('criterion', {
      type: 'string',
      choices: ['auto', ...CRITERIA],
      describe: 'Which channels a group keeps (default: auto with --data, else l1)',
    })
    .option('widths', {
      type: 'string',
      choices: ['search', ...WIDTH_SOURCES],
      describe: 'Where keep ratios come from (default: search with --data, else speed)',
    })
    .option('width-trials', {
      type: 'number',
      describe: 'Perturbed neighbours to search (default 6; 0 without labels)',
    })
    .option('uniform', {
      type: 'boolean',
      default: false,
      describe: 'The baseline: the same keep ratio for every group',
    })
    .option('round-to', {
      type: 'number',
      describe: 'Channel counts in multiples of N (default 8, 16 in wide groups)',
    })
    .option('min-channels', {
      type: 'number',
      describe:
        'Fewest channels any group keeps (default 1; 16 in CNNs where that takes under half the budget)',
    })
    .option('torch-compatible', {
      type: 'boolean',
      default: false,
      describe:
        'Equal parts in every chunk() split (ShuffleNetV2), as export-torch needs; checks a --plan-in plan',
    })
    .option('min-fraction', {
      type: 'number',
      default: 0.1,
      describe: 'Smallest fraction of its channels any group keeps',
    })
    .option('input-shape', INPUT_SHAPE_OPTION)
    .option('seed', {
      type: 'number',
      default: 0,
      describe: 'Seed for data splits, the random criterion and fine-tuning',
    })
    .option('plan-out', { type: 'string', requiresArg: true, describe: 'Write the plan (JSON) here' })
    .option('plan-in', {
      type: 'string',
      requiresArg: true,
      describe: 'Apply this saved plan instead of searching',
    })
    .option('dry-run', {
      type: 'boolean',
      default: false,
      describe: 'Stop after the plan; write no model',
    })
    .option('validate', {
      type: 'boolean',
      default: true,
      describe: 'Run the result in onnxruntime before writing (--no-validate)',
    })
    .option('json', {
      type: 'boolean',
      default: false,
      describe: 'Print one machine-readable summary on stdout',
    });
}

/** The data stages: data sets, calibration, recalibration, fine-tuning, compensation, runtime, outputs. */
function dataOptions<T>(y: Argv<T>) {
  return y
    .option('data', {
      type: 'string',
      requiresArg: true,
      describe: 'Training images: folder, .tar, IDX or CIFAR binary; or .jsonl token ids',
    })
    .option('val', {
      type: 'string',
      requiresArg: true,
      describe: 'Validation images for the accuracy figures',
    })
    .option('val-limit', {
      type: 'number',
      describe: 'Evaluate on a class-balanced subset of N images',
    })
    .option('preset', { type: 'string', describe: 'Preprocessing preset (cifar10, imagenet, fmnist)' })
    .option('spec', {
      type: 'string',
      describe: 'Preprocessing spec file (default MODEL.preprocess.json)',
    })
    .option('task', PRUNE_TASK_OPTIONS.task)
    .option('layout', PRUNE_TASK_OPTIONS.layout)
    .option('calibration-images', {
      type: 'number',
      describe: 'Training images held out to rank the candidates (default 1000; without labels 64)',
    })
    .option('recal-batches', {
      type: 'number',
      default: 20,
      describe: 'BN recalibration: batches of training images',
    })
    .option('recal-batch-size', {
      type: 'number',
      describe: 'BN recalibration: images per batch (default 64, fewer above 224x224)',
    })
    .option('finetune-epochs', {
      type: 'number',
      describe:
        "Fine-tuning epochs after pruning (0 to skip; default 1, without labels up to 20 as the model's MACs allow)",
    })
    .option('finetune-lr', {
      type: 'number',
      describe:
        'Peak learning rate (default 0.05; LayerNorm models 0.01; distilling without labels 0.01, in batches under 8 0.003, on token data 0.001)',
    })
    .option('finetune-batch', {
      type: 'number',
      describe: 'Fine-tuning batch (default 128; unlabelled 16, fewer above 224x224)',
    })
    .option('finetune-limit', {
      type: 'number',
      describe: 'Fine-tune on a class-balanced subset of N images',
    })
    .option('finetune-augment', {
      type: 'string',
      choices: AUGMENTATIONS,
      default: DEFAULT_PRUNE_AUGMENT,
      describe: "Augmentation (finetune's: full)",
    })
    .option('finetune-nesterov', {
      type: 'boolean',
      default: DEFAULT_PRUNE_NESTEROV,
      describe: "Nesterov momentum (finetune's: off)",
    })
    .option('finetune-optimizer', {
      type: 'string',
      choices: OPTIMIZER_KINDS,
      default: 'sgd',
      describe: "Update rule (adamw: torch's AdamW, default lr 3e-4)",
    })
    .option('finetune-sam', {
      type: 'number',
      default: 0,
      describe: 'Sharpness-aware steps of this radius (0: off; about 2x the time)',
    })
    .option('finetune-from', {
      type: 'string',
      choices: FINETUNE_STARTS,
      default: DEFAULT_FINETUNE_FROM,
      describe: 'The model fine-tuning starts from',
    })
    .option('distill', {
      type: 'boolean',
      default: DEFAULT_DISTILL,
      describe: 'Distil from the original while fine-tuning',
    })
    .option('distill-gate', {
      type: 'string',
      choices: DISTILL_GATES,
      // No yargs default: a gate given without --distill is an error, which a default would hide.
      describe: `With --distill: the images it applies to (default ${DEFAULT_DISTILL_GATE})`,
    })
    .option('output-kind', {
      type: 'string',
      array: true,
      choices: OUTPUT_KINDS,
      requiresArg: true,
      describe: 'Without labels: how distillation matches each output (one, or one per output; default auto)',
    })
    .option('compensate-scope', {
      type: 'string',
      choices: ['consumers', 'downstream'],
      describe: 'Layers compensation re-fits (default downstream)',
    })
    .option('compensate', {
      type: 'boolean',
      default: true,
      describe: 'Re-fit layers that read pruned channels',
    })
    .option('device', { type: 'string', default: 'cpu', describe: 'cpu, cuda or auto' })
    .option('threads', { type: 'number', describe: 'onnxruntime intra-op threads' })
    .option('external-data', {
      type: 'boolean',
      default: false,
      describe: 'Weights in OUT.data (chosen past 2 GiB)',
    })
    .option('report', {
      type: 'boolean',
      default: true,
      describe: 'Write OUT.report.{json,md,svg}',
    })
    .option('keep-stage', {
      type: 'string',
      choices: KEEP_STAGES,
      default: 'best',
      describe: 'The stage whose model is written',
    })
    .option('verbose', {
      type: 'boolean',
      default: false,
      describe: 'Print every stage, candidate and group',
    });
}

/**
 * prune --help under headings (docs/cli.md has them all; docs/pruning.md the reasons). An option added without
 * a place here shows under "Options:".
 */
const PRUNE_GROUPS = [
  [
    'Budget:',
    [
      'flops',
      'params',
      'latency',
      'latency-batch',
      'criterion',
      'widths',
      'width-trials',
      'uniform',
      'round-to',
    ],
  ],
  ['Budget:', ['min-channels', 'min-fraction', 'speed-check', 'torch-compatible', 'input-shape', 'plan-in']],
  ['Data:', ['data', 'val', 'val-limit', 'preset', 'spec', 'task', 'layout', 'calibration-images', 'seed']],
  ['Recovery:', ['recal-batches', 'recal-batch-size', 'compensate', 'compensate-scope', 'finetune-epochs']],
  ['Recovery:', ['finetune-lr', 'finetune-batch', 'finetune-limit', 'finetune-augment', 'finetune-nesterov']],
  [
    'Recovery:',
    [
      'finetune-optimizer',
      'finetune-sam',
      'finetune-from',
      'distill',
      'distill-gate',
      'output-kind',
      'keep-stage',
    ],
  ],
  ['Output:', ['output', 'plan-out', 'dry-run', 'validate', 'json', 'report', 'external-data']],
  ['Output:', ['measure-latency', 'verbose']],
] as const;

/** Expert options: `prune --help --show-hidden` lists them. */
const PRUNE_EXPERT = [
  'latency-batch',
  'width-trials',
  'uniform',
  'min-channels',
  'min-fraction',
  'val-limit',
  'layout',
  'calibration-images',
  'recal-batches',
  'recal-batch-size',
  'compensate-scope',
  'finetune-limit',
  'finetune-nesterov',
  'finetune-optimizer',
  'finetune-sam',
  'finetune-from',
  'output-kind',
  'distill-gate',
  'validate',
  'external-data',
  'threads',
  'speed-check',
  'torch-compatible',
];
