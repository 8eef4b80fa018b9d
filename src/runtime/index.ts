export {
  CUDA_INSTALL_HINT,
  DEVICES,
  cudaUnavailableReason,
  parseDevice,
  requireCuda,
  type Device,
} from './device.js';
export { evaluate, type EvalResult, type EvaluateOptions } from './evaluate.js';
export { createProgress, type Progress, type ProgressOptions } from './progress.js';
export { recalibrateBatchNorm, type RecalibrateOptions, type RecalibrationResult } from './recalibrate.js';
export {
  buildBatchNormStatsGraph,
  findBatchNormLayers,
  type BatchNormLayer,
  type BatchNormStatsOutputs,
} from '../passes/bn-stats-graph.js';
export { checkInputShape, createSession, type ModelSession, type RuntimeOptions } from './session.js';
export { benchmark, median, type BenchmarkOptions, type LatencyStats } from './benchmark.js';
