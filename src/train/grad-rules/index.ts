import { activationRules } from './activation.js';
import { convRules } from './conv.js';
import { elementwiseRules } from './elementwise.js';
import { gatherRules } from './gather.js';
import { layerNormRules } from './layer-norm.js';
import { linearRules } from './linear.js';
import { mathRules } from './math.js';
import { poolingRules } from './pooling.js';
import { resizeRules } from './resize.js';
import { shapeRules } from './shape-ops.js';
import { softmaxRules } from './softmax.js';
import type { GradRule } from './types.js';

export type { GradContext, GradRule } from './types.js';

/**
 * Backward rules by op type (default domain). Train-mode BatchNormalization is expanded into standard ops and
 * differentiated as a whole (batch-norm.ts), not through this table.
 */
export const gradRules: Record<string, GradRule> = {
  ...activationRules,
  ...convRules,
  ...elementwiseRules,
  ...gatherRules,
  ...layerNormRules,
  ...linearRules,
  ...mathRules,
  ...poolingRules,
  ...resizeRules,
  ...shapeRules,
  ...softmaxRules,
};

/** Ops whose outputs carry no gradient (shapes, comparisons, indices, constants). */
export const NON_DIFFERENTIABLE: ReadonlySet<string> = new Set([
  'Shape',
  'Size',
  'ArgMax',
  'ArgMin',
  'Equal',
  'Greater',
  'Less',
  'GreaterOrEqual',
  'LessOrEqual',
  'And',
  'Or',
  'Not',
  'NonZero',
  'ConstantOfShape',
  'Constant',
]);

/** Ops whose float initializer inputs at these slots are trained by default (weights, biases, BN affine). */
export const PARAM_SLOTS: Readonly<Record<string, readonly number[]>> = {
  Conv: [1, 2],
  ConvTranspose: [1, 2],
  Gemm: [0, 1, 2],
  // An embedding table (torch's nn.Embedding exports Gather(weight, ids)).
  Gather: [0],
  MatMul: [0, 1],
  BatchNormalization: [1, 2],
  LayerNormalization: [1, 2],
  PRelu: [1],
};
export {
  batchNormBackward,
  emitBatchMoments,
  expandTrainingBatchNorm,
  type BatchMoments,
  type BatchNormSaved,
} from './batch-norm.js';
