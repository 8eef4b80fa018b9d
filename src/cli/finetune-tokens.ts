import { escapeControl } from '../escape.js';
import { shuffledIndices } from '../data/subset.js';
import { TOKEN_SPEC, type TokenDataset } from '../data/tokens.js';
import { UserError } from '../errors.js';
import { loadModel, serializeModel, type Model } from '../ir/index.js';
import { saveModel } from '../ir/save.js';
import { checkOutput, RunOutputs } from '../run-files.js';
import { checkSidecarOutputs, stageSidecars } from './sidecars.js';
import { parseDevice } from '../runtime/device.js';
import { FidelityJudge } from '../runtime/fidelity.js';
import { checkModel, checkRuntimeAccepts, validateWritten } from '../runtime/preflight.js';
import { createProgress, type Progress } from '../runtime/progress.js';
import { DEFAULT_DISTILL_LR_TOKENS } from '../pipeline/adaprune.js';
import { DEFAULT_ADAMW_LR, withOptimizer } from '../train/optimizer.js';
import { distillFromOriginal } from '../train/distill.js';
import { inputShapesFor } from './input-shape.js';
import type { FinetuneArgs } from './finetune.js';
import { openTokenSets, refuseImageFlags, sameInputs } from './token-data.js';

/** The finetune options token data reads (the image-only ones are refused by name below). */
type TokenFinetuneArgs = Pick<
  FinetuneArgs,
  | 'model'
  | 'data'
  | 'val'
  | 'output'
  | 'teacher'
  | 'inputShape'
  | 'epochs'
  | 'batch'
  | 'lr'
  | 'momentum'
  | 'nesterov'
  | 'optimizer'
  | 'weightDecay'
  | 'seed'
  | 'limit'
  | 'valLimit'
  | 'resume'
  | 'device'
  | 'threads'
  | 'json'
>;

/**
 * `finetune MODEL --data tokens.jsonl --teacher ORIGINAL.onnx`: a text model learns the original's outputs on
 * token data (label-free distillation, as prune's recovery; docs/finetune.md). With `--val`, its fidelity to
 * the teacher before and after. Token data trains no cross-entropy: the labels a line may carry are eval's.
 */
export async function finetuneTokens(args: TokenFinetuneArgs & Record<string, unknown>): Promise<void> {
  refuseImageFlags(args, ['preset', 'spec', 'checkpoint', 'stop-after-epoch']);
  if (args.teacher === undefined)
    throw new UserError(
      'token data trains by distillation from the original: give --teacher ORIGINAL.onnx (a "label" on a line is read by eval only)',
      args.data,
    );
  if (args.resume)
    throw new UserError('--resume continues a checkpoint, which distillation on token data has none of');
  const model = loadChecked(args.model);
  const teacher = loadChecked(args.teacher);
  sameInputs(model, teacher, args.teacher);
  const given = inputShapesFor(model, args.inputShape, args.model);
  const sets = await openTokenSets(model, args.model, given, args.data, args.val);
  checkOutput(args.output, 'model');
  checkSidecarOutputs(args.model, args.output);
  await checkRuntimeAccepts(model, args.model, sets.inputShapes);
  const runtime = {
    device: parseDevice(args.device),
    ...(args.threads !== undefined && { threads: args.threads }),
  };
  const judge =
    sets.val &&
    new FidelityJudge(serializeModel(teacher), sets.val, fidelityOptions(sets.val, args, runtime));
  const before = judge && 1 - (await judge.score(serializeModel(model))).error;
  let bar: Progress | undefined;
  const result = await distillFromOriginal(model, teacher, sets.train, {
    epochs: args.epochs,
    batchSize: args.batch,
    lr: args.lr ?? (args.optimizer === 'adamw' ? DEFAULT_ADAMW_LR : DEFAULT_DISTILL_LR_TOKENS),
    sgd: withOptimizer(
      { momentum: args.momentum, nesterov: args.nesterov, weightDecay: args.weightDecay },
      args.optimizer,
    ),
    spec: TOKEN_SPEC,
    seed: args.seed,
    ...(args.limit !== undefined && { limit: args.limit }),
    ...runtime,
    onStep: (p) => {
      if (p.step === 1) bar = createProgress(`epoch ${p.epoch}/${p.epochs}`, p.stepsPerEpoch);
      bar?.update(p.step, `loss ${p.loss.toFixed(4)} ${p.imagesPerSecond.toFixed(0)} samples/s`);
      if (p.step === p.stepsPerEpoch) bar?.stop();
    },
  });
  const after = judge && 1 - (await judge.score(serializeModel(result.model))).error;
  await validateWritten(result.model, 'fine-tuned', sets.inputShapes);
  const outputs = new RunOutputs();
  saveModel(result.model, args.output, { staged: outputs.staged });
  stageSidecars(outputs, args.model, args.output);
  outputs.commit();
  const fidelity = before !== undefined && after !== undefined ? { before, after } : undefined;
  if (args.json)
    process.stdout.write(
      `${JSON.stringify({ output: args.output, history: result.history, ...(fidelity && { fidelity }) }, null, 2)}\n`,
    );
  else
    process.stderr.write(
      `wrote ${escapeControl(args.output)}${fidelity ? ` (fidelity R² to the teacher on --val ${(100 * fidelity.before).toFixed(2)}% -> ${(100 * fidelity.after).toFixed(2)}%)` : ''}\n`,
    );
}

function loadChecked(file: string): Model {
  const model = loadModel(file);
  checkModel(model, file);
  return model;
}

function fidelityOptions(
  val: TokenDataset,
  args: TokenFinetuneArgs,
  runtime: { device?: ReturnType<typeof parseDevice>; threads?: number },
) {
  const indices =
    args.valLimit !== undefined
      ? shuffledIndices(val.length, args.seed).slice(0, Math.min(args.valLimit, val.length)).sort()
      : undefined;
  return { spec: TOKEN_SPEC, runtime, ...(indices && { indices }) };
}
