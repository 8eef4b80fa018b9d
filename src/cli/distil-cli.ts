import { escapeControl } from '../escape.js';
import { saveModel } from '../ir/save.js';
import { serializeModel, type Model } from '../ir/index.js';
import { checkOutput, RunOutputs } from '../run-files.js';
import type { AnyDataset } from '../data/dataset.js';
import { seededSubset } from '../data/subset.js';
import { parseDevice } from '../runtime/device.js';
import { FidelityJudge, type FidelityOptions } from '../runtime/fidelity.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { checkRuntimeAccepts, validateWritten } from '../runtime/preflight.js';
import { createProgress, type Progress } from '../runtime/progress.js';
import type { DistillResult } from '../train/distill.js';
import type { StepProgress } from '../train/loop.js';
import { DEFAULT_ADAMW_LR, withOptimizer } from '../train/optimizer.js';
import type { FinetuneArgs } from './finetune.js';
import { checkSidecarOutputs, stageSidecars } from './sidecars.js';
import { isTokenData } from './token-data.js';

/** What `finetune`'s two distillation paths (images without labels, token data) share. */
type DistilArgs = Pick<
  FinetuneArgs,
  | 'model'
  | 'data'
  | 'output'
  | 'json'
  | 'epochs'
  | 'batch'
  | 'lr'
  | 'optimizer'
  | 'momentum'
  | 'nesterov'
  | 'weightDecay'
  | 'seed'
  | 'limit'
>;

type InputShapes = Record<string, number[]> | undefined;

/** onnxruntime's options from --device and --threads. */
export function runtimeOf(args: Pick<FinetuneArgs, 'device' | 'threads'>): RuntimeOptions {
  return { device: parseDevice(args.device), ...(args.threads !== undefined && { threads: args.threads }) };
}

/**
 * With validation data: a judge of fidelity to `teacher` on it (`--val-limit` images of it, seeded), and the
 * starting `model`'s score, which writeDistilled compares the result with.
 */
export async function startFidelity(
  teacher: Model,
  model: Model,
  val: AnyDataset | undefined,
  args: Pick<FinetuneArgs, 'valLimit' | 'seed'>,
  options: FidelityOptions,
): Promise<{ judge?: FidelityJudge; before?: number }> {
  if (!val) return {};
  const indices = seededSubset(val.length, args.valLimit, args.seed);
  const judge = new FidelityJudge(serializeModel(teacher), val, { ...options, ...(indices && { indices }) });
  return { judge, before: 1 - (await judge.score(serializeModel(model))).error };
}

/** Before any training: the output may be no input of the run, and onnxruntime must accept the model. */
export async function checkDistillationRun(
  args: DistilArgs,
  model: Model,
  inputShapes: InputShapes,
): Promise<void> {
  checkOutput(args.output, 'model');
  checkSidecarOutputs(args.model, args.output);
  await checkRuntimeAccepts(model, args.model, inputShapes);
}

/** The distillation options `finetune` reads, with a progress bar; `defaultLr` is the data's. */
export function distillOptionsOf(args: DistilArgs, defaultLr: number) {
  let bar: Progress | undefined;
  const unit = isTokenData(args.data) ? 'samples' : 'img';
  return {
    epochs: args.epochs,
    batchSize: args.batch,
    lr: args.lr ?? (args.optimizer === 'adamw' ? DEFAULT_ADAMW_LR : defaultLr),
    sgd: withOptimizer(
      { momentum: args.momentum, nesterov: args.nesterov, weightDecay: args.weightDecay },
      args.optimizer,
    ),
    seed: args.seed,
    ...(args.limit !== undefined && { limit: args.limit }),
    onStep: (p: StepProgress) => {
      if (p.step === 1) bar = createProgress(`epoch ${p.epoch}/${p.epochs}`, p.stepsPerEpoch);
      bar?.update(p.step, `loss ${p.loss.toFixed(4)} ${p.imagesPerSecond.toFixed(0)} ${unit}/s`);
      if (p.step === p.stepsPerEpoch) bar?.stop();
    },
  };
}

/**
 * After distillation: the fidelity to the teacher on --val (when `judge`; `before` was scored on the starting
 * model), the written model validated, written whole with its sidecars, and the history printed (JSON or a line).
 */
export async function writeDistilled(
  args: DistilArgs,
  result: DistillResult,
  inputShapes: InputShapes,
  { judge, before }: { judge?: FidelityJudge; before?: number },
): Promise<void> {
  const after = judge && 1 - (await judge.score(serializeModel(result.model))).error;
  await validateWritten(result.model, 'fine-tuned', inputShapes);
  const outputs = new RunOutputs();
  saveModel(result.model, args.output, { staged: outputs.staged });
  stageSidecars(outputs, args.model, args.output);
  outputs.commit();
  const fidelity = before !== undefined && after !== undefined ? { before, after } : undefined;
  if (args.json) {
    const json = { output: args.output, history: result.history, ...(fidelity && { fidelity }) };
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
    return;
  }
  const r2 = fidelity
    ? ` (fidelity R² to the teacher on --val ${(100 * fidelity.before).toFixed(2)}% -> ${(100 * fidelity.after).toFixed(2)}%)`
    : '';
  process.stderr.write(`wrote ${escapeControl(args.output)}${r2}\n`);
}
