import { TOKEN_SPEC, type TokenDataset } from '../data/tokens.js';
import { UserError } from '../errors.js';
import { loadModel, serializeModel, type Model } from '../ir/index.js';
import { saveModel } from '../ir/save.js';
import { checkOutput, RunOutputs } from '../run-files.js';
import { checkSidecarOutputs, stageSidecars } from './sidecars.js';
import { parseDevice } from '../runtime/device.js';
import { FidelityJudge } from '../runtime/fidelity.js';
import { checkModel, checkRuntimeAccepts, validateWritten } from '../runtime/preflight.js';
import { DEFAULT_DISTILL_LR_TOKENS } from '../pipeline/adaprune.js';
import { distillFromOriginal } from '../train/distill.js';
import { distillOptionsOf, fidelitySubset, reportDistillation } from './distil-cli.js';
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
  const result = await distillFromOriginal(model, teacher, sets.train, {
    ...distillOptionsOf(args, DEFAULT_DISTILL_LR_TOKENS),
    spec: TOKEN_SPEC,
    ...runtime,
  });
  const after = judge && 1 - (await judge.score(serializeModel(result.model))).error;
  await validateWritten(result.model, 'fine-tuned', sets.inputShapes);
  const outputs = new RunOutputs();
  saveModel(result.model, args.output, { staged: outputs.staged });
  stageSidecars(outputs, args.model, args.output);
  outputs.commit();
  const fidelity = before !== undefined && after !== undefined ? { before, after } : undefined;
  reportDistillation(args, result.history, fidelity);
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
  const indices = fidelitySubset(val.length, args.valLimit, args.seed);
  return { spec: TOKEN_SPEC, runtime, ...(indices && { indices }) };
}
