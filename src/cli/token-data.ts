import { openDataset } from '../data/open.js';
import {
  isTokenData,
  TOKEN_SPEC,
  tokenInputShapes,
  tokenModelOf,
  type TokenDataset,
} from '../data/tokens.js';
import { UserError } from '../errors.js';
import type { Model } from '../ir/index.js';
import type { DataOptions } from '../pipeline/adaprune.js';
import type { OutputKind } from '../train/distill.js';

export { isTokenData };

/**
 * Opens `data` (and `val`) as token sets of `model`: read against its inputs, at the length the model fixes or
 * `--input-shape` gives, else the training set's longest sample (which the validation set is then padded or
 * cut to as well, so that every stage runs at one shape). Also returns the input shapes of every input, for
 * the commands' checks and the pruning analysis.
 */
export async function openTokenSets(
  model: Model,
  file: string,
  given: Record<string, number[]> | undefined,
  data: string,
  val: string | undefined,
): Promise<{ train: TokenDataset; val?: TokenDataset; inputShapes: Record<string, number[]> }> {
  if (val !== undefined && !isTokenData(val))
    throw new UserError('--data is token data (.jsonl): give --val as token data too', val);
  const tokens = tokenModelOf(model, given, file);
  const train = (await openDataset(data, { labels: 'optional', tokens })) as TokenDataset;
  const opened =
    val === undefined
      ? undefined
      : ((await openDataset(val, {
          labels: 'optional',
          tokens: { ...tokens, length: train.sequenceLength },
        })) as TokenDataset);
  return {
    train,
    ...(opened && { val: opened }),
    inputShapes: { ...tokenInputShapes(train), ...given },
  };
}

/** The image-only flags, refused with token data rather than ignored. */
export function refuseImageFlags(argv: Record<string, unknown>, flags: readonly string[]): void {
  const given = flags.filter(
    (f) => argv[f.replace(/-(\w)/g, (_, c: string) => c.toUpperCase())] !== undefined,
  );
  if (given.length)
    throw new UserError(
      `${given.map((f) => `--${f}`).join(', ')} ${given.length === 1 ? 'applies' : 'apply'} to images; token data (.jsonl) has no preprocessing`,
    );
}

interface PruneTokenArgs {
  model: string;
  data?: string;
  val?: string;
  valLimit?: number;
  calibrationImages?: number;
  recalBatches: number;
  recalBatchSize?: number;
  outputKind?: string[];
}

/** `prune --data tokens.jsonl`: the pipeline's data (label-free: fidelity and distillation), and input shapes. */
export async function openTokenPruneData(
  argv: PruneTokenArgs & Record<string, unknown>,
  model: Model,
  given: Record<string, number[]> | undefined,
): Promise<{ data: DataOptions; inputShapes: Record<string, number[]> }> {
  refuseImageFlags(argv, ['preset', 'spec', 'task', 'layout']);
  const sets = await openTokenSets(model, argv.model, given, argv.data!, argv.val);
  return {
    data: {
      train: sets.train,
      ...(sets.val && { val: sets.val }),
      valLimit: argv.valLimit,
      spec: TOKEN_SPEC,
      calibrationImages: argv.calibrationImages,
      recalibrationBatches: argv.recalBatches,
      recalibrationBatchSize: argv.recalBatchSize,
      ...(argv.outputKind && { outputKinds: argv.outputKind.map((k) => k as OutputKind) }),
    },
    inputShapes: sets.inputShapes,
  };
}
