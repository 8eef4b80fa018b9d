export { classifyTask, argmax, rankOfLabel } from './classify.js';
export { denseTask, type DenseMaps } from './dense.js';
export { boxLayoutOf, decodeBoxes, detectClassCount, detectTask } from './detect.js';
export {
  boxIou,
  CocoAccumulator,
  COCO_IOU_THRESHOLDS,
  COCO_RECALL_POINTS,
  nonMaxSuppression,
  type CocoOptions,
  type CocoResult,
  type NmsOptions,
} from './detect-metrics.js';
export {
  collectReference,
  evaluateTask,
  runOutput,
  type TaskEvalOptions,
  type TaskEvalResult,
  type TaskReference,
} from './evaluate.js';
export { labelFolderName, TaskImageFolder } from './folder.js';
export {
  inputGeometry,
  labelsToInput,
  readYoloLabels,
  type InputGeometry,
  type YoloLabel,
} from './labels.js';
export {
  BOX_LAYOUTS,
  layoutPathFor,
  readLayoutFile,
  resolveLayout,
  taskFromShape,
  withDefaults,
  type BoxLayout,
  type DeclaredOutput,
  type LayoutRequest,
  type OutputLayout,
  type ResolvedLayout,
} from './layout.js';
export { registeredTasks, taskFor } from './registry.js';
export { argmaxMask, ConfusionMatrix, segmentTask, type ClassMask } from './segment.js';
export { classLabels, folderLabels, type LabelContext, type TaskLabels } from './task-labels.js';
export {
  TASK_NAMES,
  type Box,
  type Detection,
  type GroundTruthBox,
  type MetricAccumulator,
  type OutputTensor,
  type Task,
  type TaskMetric,
  type TaskName,
} from './types.js';
