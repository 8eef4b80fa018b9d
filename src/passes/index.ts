import type { Model } from '../ir/model.js';
import { constantReshapeTargets } from './constant-reshape-targets.js';
import { removeDeadNodes } from './dead-code.js';
import { foldConstants } from './fold-constants.js';
import type { PassManager } from './pass-manager.js';
import { removeDropout } from './remove-dropout.js';
import { removeIdentity } from './remove-identity.js';
import { topoSort } from './topo-sort.js';
import { removeUnusedInitializers } from './unused-initializers.js';

export { PassManager, type Pass, type PassManagerOptions, type PassTiming } from './pass-manager.js';
export {
  inferShapes,
  analyzeShapes,
  type ShapeAnalysis,
  type ShapeInferenceOptions,
  type ShapeInferenceResult,
} from './infer-shapes.js';
export { foldConstants, type FoldConstantsOptions, type FoldConstantsResult } from './fold-constants.js';
export { removeIdentity, bypassNode } from './remove-identity.js';
export { removeDropout } from './remove-dropout.js';
export { removeDeadNodes, deadNodes, dropDanglingValueInfo } from './dead-code.js';
export { removeUnusedInitializers } from './unused-initializers.js';
export { topoSort, topologicalOrder, outerReferences } from './topo-sort.js';

/** What each cleanup pass did (all zero when the model was already clean). */
export interface CleanupSummary {
  identities: number;
  dropouts: number;
  folded: number;
  /** Computed Reshape targets made constant (0 copies a dim, -1 infers one). */
  constantReshapes: number;
  foldedInitializers: number;
  deadNodes: number;
  unusedInitializers: number;
  reordered: number;
}

/**
 * The standard cleanup before analysis: Identity and inference Dropout removal, constant folding, constant
 * Reshape targets, dead nodes, unused initializers, then a stable topological order. Idempotent: a second run changes nothing.
 */
export function cleanupPipeline(pm: PassManager, model: Model): CleanupSummary {
  const identities = pm.run(removeIdentity, model).removed;
  const dropouts = pm.run(removeDropout, model).removed;
  const fold = pm.run(foldConstants, model, undefined);
  const constantReshapes = pm.run(constantReshapeTargets, model).rewritten;
  const dead = pm.run(removeDeadNodes, model).removed;
  const unused = pm.run(removeUnusedInitializers, model).removed;
  const reordered = pm.run(topoSort, model).moved;
  return {
    identities,
    dropouts,
    folded: fold.folded,
    constantReshapes,
    foldedInitializers: fold.initializers,
    deadNodes: dead,
    unusedInitializers: unused,
    reordered,
  };
}
