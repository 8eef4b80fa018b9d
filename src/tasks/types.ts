import type { OutputLayout } from './layout.js';

/** The tasks eval and prune measure. */
export const TASK_NAMES = ['classify', 'detect', 'segment', 'dense'] as const;
export type TaskName = (typeof TASK_NAMES)[number];

/** One output of one onnxruntime run: the whole batch. */
export interface OutputTensor {
  data: Float32Array;
  dims: readonly number[];
}

/** A box in model-input pixels, corners (x1, y1, x2, y2). */
export type Box = [number, number, number, number];

export interface Detection {
  box: Box;
  score: number;
  cls: number;
}

export interface GroundTruthBox {
  box: Box;
  cls: number;
}

/** A class-index mask (or a map) of one image, row-major. */
export interface Plane<T extends Uint8Array | Uint16Array | Float32Array> {
  data: T;
  height: number;
  width: number;
}

/**
 * One figure of a task: the primary value (what a candidate is ranked by) and the rest. A value is null where it
 * is undefined (no ground-truth box, no foreground pixel); `notes` says why.
 */
export interface TaskMetric {
  task: TaskName;
  /** The name of the primary figure, e.g. `mAP50-95`, `mIoU`, `top1`. */
  primary: string;
  value: number | null;
  values: Record<string, number | null>;
  /** Counts behind the figures (boxes, detections). */
  counts?: Record<string, number>;
  /** Per class (by name, or index): IoU for segment, AP@0.5:0.95 for detect; null where undefined. */
  perClass?: Record<string, number | null>;
  /** Images measured. */
  n: number;
  notes: string[];
}

/** What a task accumulates image by image; one per measured figure (against labels, or against a reference). */
export interface MetricAccumulator<P, L> {
  add(prediction: P, target: L): void;
  summary(): TaskMetric;
}

/**
 * A task, registered in `registry.ts` like the ops: how to read a model's raw output, what a label is, and how
 * the metric is accumulated and summarised. `P` is one image's prediction, `L` one image's target (a label read
 * from disk, or the original model's prediction made into one by `asTarget`).
 */
export interface Task<P = unknown, L = unknown> {
  readonly name: TaskName;
  /** One line for --help and reports. */
  readonly describe: string;
  /** Checks the output's shape against the layout (one-line UserError naming the model) on the first batch. */
  check(output: OutputTensor, layout: OutputLayout, source: string): void;
  /** The layout with what the first batch's output shape tells filled in (class count, box axis). */
  complete(output: OutputTensor, layout: OutputLayout): OutputLayout;
  /** Splits one batch's output into one prediction per image. */
  decode(output: OutputTensor, layout: OutputLayout): P[];
  /** The original model's prediction as the target a pruned model is measured against (fidelity). */
  asTarget(prediction: P, layout: OutputLayout): L;
  /** A fresh accumulator; `fidelity` says the targets are the original model's predictions. */
  metric(layout: OutputLayout, fidelity: boolean): MetricAccumulator<P, L>;
}
