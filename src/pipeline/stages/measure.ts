import { releaseLoadedFile, serializeModel } from '../../ir/index.js';
import { validateModel } from '../../runtime/validate.js';
import type { Outcome, RunContext, Setup } from '../context.js';

/** Validation, and the original and the result timed side by side. */
export async function measure(ctx: RunContext, setup: Setup, outcome: Outcome): Promise<Outcome> {
  const { options } = ctx;
  if (options.dryRun) return { ...outcome, originalMs: setup.baselineMs };
  // The input file's buffer goes before onnxruntime's allocations (the peak of a prune): the models that still
  // view it read their bytes back from the file when needed.
  releaseLoadedFile(ctx.input);
  if (options.validate !== false)
    await ctx.stage('validate', () => validateModel(outcome.result, ctx.validationDims()));
  const measured =
    options.measureLatency === true || options.speedCheck === 'retry' || options.latency !== undefined;
  if (!measured) {
    ctx.skipped.push('latency measurement (--measure-latency to time the original and the result)');
    return { ...outcome, originalMs: setup.baselineMs };
  }
  // Measured again side by side with the pruned model, so the reported speed-up compares like with like.
  const [originalMs, prunedMs] = await ctx.stage('measure latency before/after', () =>
    ctx.timeSideBySide([ctx.original, serializeModel(outcome.result)]),
  );
  return { ...outcome, originalMs, prunedMs };
}
