export { buildStepGraph, type StepGraph, type StepGraphOptions, type TrainedParam } from './step-graph.js';
export {
  finetune,
  withWeights,
  type FinetuneOptions,
  type FinetuneResult,
  type StepProgress,
} from './loop.js';
export { SCHEDULE_KINDS, learningRate, type ScheduleKind, type ScheduleOptions } from './schedule.js';
export { readCheckpoint, writeCheckpoint, type EpochRecord, type TrainingState } from './checkpoint.js';
export type { SgdOptions } from './optimizer.js';
export { gradRules, type GradContext, type GradRule } from './grad-rules/index.js';
