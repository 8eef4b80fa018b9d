import { TOKEN_SPEC } from '../data/tokens.js';
import { UserError } from '../errors.js';
import { loadModel, type Model } from '../ir/index.js';
import { checkModel, sameFeeds } from '../runtime/preflight.js';
import { DEFAULT_DISTILL_LR_TOKENS } from '../pipeline/adaprune.js';
import { distillFromOriginal } from '../train/distill.js';
import {
  checkDistillationRun,
  distillOptionsOf,
  runtimeOf,
  startFidelity,
  writeDistilled,
} from './distil-cli.js';
import { inputShapesFor } from './input-shape.js';
import type { FinetuneArgs } from './finetune.js';
import { openTokenSets, refuseImageFlags } from './token-data.js';

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
  sameFeeds(model, teacher, args.teacher, 'the token data is fed to both');
  const given = inputShapesFor(model, args.inputShape, args.model);
  const sets = await openTokenSets(model, args.model, given, args.data, args.val);
  await checkDistillationRun(args, model, sets.inputShapes);
  const runtime = runtimeOf(args);
  const fidelity = await startFidelity(teacher, model, sets.val, args, { spec: TOKEN_SPEC, runtime });
  const result = await distillFromOriginal(model, teacher, sets.train, {
    ...distillOptionsOf(args, DEFAULT_DISTILL_LR_TOKENS),
    spec: TOKEN_SPEC,
    ...runtime,
  });
  await writeDistilled(args, result, sets.inputShapes, fidelity);
}

function loadChecked(file: string): Model {
  const model = loadModel(file);
  checkModel(model, file);
  return model;
}
