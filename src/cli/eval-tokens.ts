import { seededSubset } from '../data/subset.js';
import { TOKEN_SPEC, type TokenDataset } from '../data/tokens.js';
import { UserError } from '../errors.js';
import { loadModel, serializeModel, type Model } from '../ir/index.js';
import { renderKeyValues } from '../report/table.js';
import { FidelityJudge, type RunOutputs } from '../runtime/fidelity.js';
import { checkModel, sameFeeds } from '../runtime/preflight.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { inputShapesFor } from './input-shape.js';
import { openTokenSets, refuseImageFlags } from './token-data.js';

interface TokenEvalArgs {
  model: string;
  data: string;
  against?: string;
  inputShape?: string | string[];
  limit?: number;
  seed: number;
  batch?: number;
  json: boolean;
}

/**
 * `eval MODEL --data tokens.jsonl`: a text model measured on token data (docs/data.md, "Token data"). With
 * `--against ORIGINAL.onnx`, its fidelity to the original (R² of the outputs, as prune scores stages) and how
 * often its top class is the original's; with a `"label"` on every line, its top-1. Needs one of the two.
 */
export async function evalTokens(
  args: TokenEvalArgs & Record<string, unknown>,
  runtime: RuntimeOptions,
): Promise<string> {
  refuseImageFlags(args, ['preset', 'spec', 'mean', 'std', 'resize', 'crop', 'task', 'layout', 'split']);
  const model = loadChecked(args.model);
  const original = args.against !== undefined ? loadChecked(args.against) : undefined;
  if (original) sameFeeds(model, original, args.against!, 'the token data is fed to both');
  const given = inputShapesFor(model, args.inputShape, args.model);
  const { train: data } = await openTokenSets(model, args.model, given, args.data, undefined);
  if (!original && !data.classLabels)
    throw new UserError(
      'token data without labels: give --against ORIGINAL.onnx (fidelity to the original), or a "label" on every line',
      args.data,
    );
  const indices = seededSubset(data.length, args.limit, args.seed);
  const started = performance.now();
  const options = { spec: TOKEN_SPEC, runtime, batchSize: args.batch ?? 64, ...(indices && { indices }) };
  const bytes = serializeModel(model);
  const judge = new FidelityJudge(original ? serializeModel(original) : bytes, data, options);
  const scored = original ? await judge.scoreWithOutputs(bytes) : undefined;
  const outputs = scored?.outputs.outputs ?? (await judge.originalOutputs());
  const n = indices?.length ?? data.length;
  const top1 = data.classLabels && agreement(outputs, indices, (i) => data.classLabels![i]!);
  const reference = original && classesOf(await judge.originalOutputs());
  const agree = reference && agreement(outputs, undefined, (k) => reference[k]!);
  const report = {
    model: args.model,
    ...(args.against !== undefined && { against: args.against }),
    data: describeTokens(data, n, args),
    ...(top1 && { top1 }),
    ...(scored && {
      fidelity: {
        r2: 1 - scored.fidelity.error,
        error: scored.fidelity.error,
        perOutput: scored.fidelity.perOutput,
      },
    }),
    ...(agree && { top1VsOriginal: agree }),
    seconds: (performance.now() - started) / 1000,
  };
  if (args.json) return `${JSON.stringify(report, null, 2)}\n`;
  const percent = (x: number): string => `${(100 * x).toFixed(2)}%`;
  const rows: [string, string][] = [
    ['model', args.model],
    ['data', `${data.path} (token data, ${n} samples of ${data.sequenceLength} tokens)`],
  ];
  if (top1) rows.push(['top-1', `${percent(top1.value)} (${top1.correct}/${top1.n})`]);
  if (report.fidelity) rows.push(['fidelity R²', `${percent(report.fidelity.r2)} against ${args.against}`]);
  if (agree) rows.push(['top-1 vs original', `${percent(agree.value)} (${agree.correct}/${agree.n})`]);
  return `${renderKeyValues(rows)}\n`;
}

function loadChecked(file: string): Model {
  const model = loadModel(file);
  checkModel(model, file);
  return model;
}

/** The top class of every sample (the first output's rows), in the order run. */
function classesOf(outputs: RunOutputs['outputs']): Int32Array {
  const classes: number[] = [];
  for (const batch of outputs) {
    const { data, dims } = batch[0]!;
    const k = data.length / dims[0]!;
    for (let s = 0; s < dims[0]!; s++) {
      let best = 0;
      for (let j = 1; j < k; j++) if (data[s * k + j]! > data[s * k + best]!) best = j;
      classes.push(best);
    }
  }
  return Int32Array.from(classes);
}

/** How often the top class equals `target` (by the sample's data set index, or its position in the run). */
function agreement(
  outputs: RunOutputs['outputs'],
  indices: ArrayLike<number> | undefined,
  target: (i: number) => number,
): { value: number; correct: number; n: number } {
  const classes = classesOf(outputs);
  let correct = 0;
  classes.forEach((c, k) => (correct += c === target(indices ? indices[k]! : k) ? 1 : 0));
  return { value: classes.length ? correct / classes.length : 0, correct, n: classes.length };
}

function describeTokens(data: TokenDataset, n: number, args: TokenEvalArgs): object {
  return {
    kind: data.kind,
    path: data.path,
    samples: n,
    sequenceLength: data.sequenceLength,
    truncated: data.truncated,
    labelled: data.classLabels !== undefined,
    limit: args.limit ?? null,
    seed: args.seed,
  };
}
