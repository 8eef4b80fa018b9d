/**
 * The library API: load an exported model, prune it to a budget (optionally with data: adaptive criterion,
 * BN recalibration, fine-tuning), evaluate and fine-tune it, save it. Everything the CLI does goes through
 * these functions.
 */
import type { Dataset } from './data/dataset.js';
import { serializeModel, type Model } from './ir/index.js';
import { evaluate as evaluateModel, type EvalResult, type EvaluateOptions } from './runtime/evaluate.js';
import type { ModelSession } from './runtime/session.js';

export {
  loadModel,
  decodeModel,
  saveModel,
  serializeModel,
  verifyModel,
  Model,
  Graph,
  Node,
  Value,
  Tensor,
  DataType,
  type SaveOptions,
  type LoadOptions,
} from './ir/index.js';
export { UserError } from './errors.js';
export { PassManager, type Pass } from './passes/pass-manager.js';
export { cleanupPipeline, inferShapes, analyzeShapes, foldConstants } from './passes/index.js';
export { countCost, type CostReport } from './analysis/cost.js';
export {
  adaPrune as prune,
  type AdaPruneOptions as PruneOptions,
  type AdaPruneResult as PruneResult,
} from './pipeline/adaprune.js';
export {
  pruneModel,
  analyzeForPruning,
  planPrune,
  applyPlan,
  describeGroups,
  validatePlan,
  CRITERIA,
  type Criterion,
  type Plan,
  type PruneAnalysis,
  type PlannedPrune,
} from './prune/index.js';
export { finetune, type FinetuneOptions, type FinetuneResult } from './train/loop.js';
export { openDataset, resolveSpec, PRESETS, type Dataset, type PreprocessSpec } from './data/index.js';
export { createSession, type ModelSession, type RuntimeOptions } from './runtime/session.js';
export { writeReports, type PruneReport } from './report/index.js';
export type { EvalResult, EvaluateOptions };

/** Top-1/top-5 of a classifier on a dataset; takes a Model, a file path, model bytes or an open session. */
export function evaluate(
  model: Model | ModelSession | string | Uint8Array,
  dataset: Dataset,
  options: EvaluateOptions,
): Promise<EvalResult> {
  const target = typeof model === 'object' && 'graph' in model ? serializeModel(model as Model) : model;
  return evaluateModel(target as ModelSession | string | Uint8Array, dataset, options);
}
