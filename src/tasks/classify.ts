import { UserError } from '../errors.js';
import type { OutputLayout } from './layout.js';
import type { MetricAccumulator, Task, TaskMetric } from './types.js';

/**
 * The label's position when scores are sorted descending, ties broken by class index as argmax/topk do (the
 * first of equal scores wins); a NaN score never counts as correct. The rule runtime/evaluate.ts applies.
 */
export function rankOfLabel(scores: Float32Array, label: number): number {
  const target = scores[label]!;
  if (Number.isNaN(target)) return scores.length;
  let rank = 0;
  for (let j = 0; j < scores.length; j++) {
    const v = scores[j]!;
    if (v > target || (v === target && j < label)) rank++;
  }
  return rank;
}

/** The first index of the highest score. */
export function argmax(scores: Float32Array): number {
  let best = 0;
  for (let j = 1; j < scores.length; j++) if (scores[j]! > scores[best]!) best = j;
  return best;
}

class ClassifyMetric implements MetricAccumulator<Float32Array, number> {
  private top1 = 0;
  private topK = 0;
  private n = 0;
  private k = 5;

  add(prediction: Float32Array, target: number): void {
    this.k = Math.min(5, prediction.length);
    const rank = rankOfLabel(prediction, target);
    if (rank < 1) this.top1++;
    if (rank < this.k) this.topK++;
    this.n++;
  }

  summary(): TaskMetric {
    return {
      task: 'classify',
      primary: 'top1',
      value: this.n ? this.top1 / this.n : null,
      values: {
        top1: this.n ? this.top1 / this.n : null,
        [`top${this.k}`]: this.n ? this.topK / this.n : null,
      },
      n: this.n,
      notes: [],
    };
  }
}

/** Classifiers ([N, classes] scores): top-1/top-5 against labels, or against the original's argmax. */
export const classifyTask: Task<Float32Array, number> = {
  name: 'classify',
  describe: '[N,classes] scores: top-1 and top-5',
  check(output, layout: OutputLayout, source) {
    if (output.dims.length !== 2)
      throw new UserError(
        `output '${layout.output}' is [${output.dims.join(',')}]; a classifier's is [N, classes]`,
        source,
      );
  },
  complete(output, layout) {
    return { ...layout, classes: layout.classes ?? output.dims[1]! };
  },
  decode(output) {
    const [n, k] = output.dims as [number, number];
    return Array.from({ length: n }, (_, i) => output.data.slice(i * k, (i + 1) * k));
  },
  asTarget(prediction) {
    return argmax(prediction);
  },
  metric() {
    return new ClassifyMetric();
  },
};
