import { activationRules } from './activation.js';
import { convRules } from './conv.js';
import { elementwiseRules } from './elementwise.js';
import { linearRules } from './linear.js';
import { poolingRules } from './pooling.js';
import { shapeRules } from './shape-ops.js';
import type { GradRule } from './types.js';

export type { GradContext, GradRule } from './types.js';

/** Backward rules by op type (default domain). BatchNormalization is handled by the step-graph builder. */
export const gradRules: Record<string, GradRule> = {
  ...activationRules,
  ...convRules,
  ...elementwiseRules,
  ...linearRules,
  ...poolingRules,
  ...shapeRules,
};
