import { escapeControl } from '../escape.js';
import { shuffledIndices } from '../data/subset.js';
import { createProgress, type Progress } from '../runtime/progress.js';
import type { StepProgress } from '../train/loop.js';
import { DEFAULT_ADAMW_LR, withOptimizer } from '../train/optimizer.js';
import type { FinetuneArgs } from './finetune.js';
import { isTokenData } from './token-data.js';

/** `--val-limit`'s images of a validation set for fidelity: a seeded subset in file order, or all (undefined). */
export function fidelitySubset(
  valLength: number,
  valLimit: number | undefined,
  seed: number,
): Int32Array | undefined {
  if (valLimit === undefined) return undefined;
  return shuffledIndices(valLength, seed).slice(0, Math.min(valLimit, valLength)).sort();
}

/** What `finetune` prints after distillation: the history as JSON, or one line with the fidelity R². */
export function reportDistillation(
  args: { output: string; json: boolean },
  history: { epoch: number; loss: number; seconds: number }[],
  fidelity: { before: number; after: number } | undefined,
): void {
  if (args.json) {
    const json = { output: args.output, history, ...(fidelity && { fidelity }) };
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
    return;
  }
  const r2 = fidelity
    ? ` (fidelity R² to the teacher on --val ${(100 * fidelity.before).toFixed(2)}% -> ${(100 * fidelity.after).toFixed(2)}%)`
    : '';
  process.stderr.write(`wrote ${escapeControl(args.output)}${r2}\n`);
}

/** The `finetune` options distillation reads, the same for images and token data; `defaultLr` is the data's. */
type DistilArgs = Pick<
  FinetuneArgs,
  | 'data'
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

export function distillOptionsOf(args: DistilArgs, defaultLr: number) {
  let bar: Progress | undefined;
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
      bar?.update(p.step, `loss ${p.loss.toFixed(4)} ${p.imagesPerSecond.toFixed(0)} ${unitOf(args)}/s`);
      if (p.step === p.stepsPerEpoch) bar?.stop();
    },
  };
}

function unitOf(args: DistilArgs): string {
  return isTokenData(args.data) ? 'samples' : 'img';
}
