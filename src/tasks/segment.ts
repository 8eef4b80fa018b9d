import { UserError } from '../errors.js';
import { layoutClassCount, withDefaults, type OutputLayout } from './layout.js';
import type { MetricAccumulator, OutputTensor, Plane, Task, TaskMetric } from './types.js';

export type ClassMask = Plane<Uint8Array | Uint16Array>;

/** Per-pixel argmax over the K channels of image `image` in an [N, K, H, W] output (the first of equal wins). */
export function argmaxMask(output: OutputTensor, image: number): Plane<Uint16Array> {
  const [, k, height, width] = output.dims as [number, number, number, number];
  const plane = height * width;
  const base = image * k * plane;
  const data = new Uint16Array(plane);
  const best = new Float32Array(plane).fill(-Infinity);
  for (let c = 0; c < k; c++) {
    const off = base + c * plane;
    for (let p = 0; p < plane; p++) {
      const v = output.data[off + p]!;
      if (v > best[p]!) {
        best[p] = v;
        data[p] = c;
      }
    }
  }
  return { data, height, width };
}

/**
 * A K x K confusion matrix over every scored pixel (rows: target class, columns: predicted), as torchvision's
 * segmentation reference keeps it. mIoU averages IoU = TP / (TP + FP + FN) over the classes that occur in the
 * targets or the predictions; pixel accuracy is the diagonal over all scored pixels.
 */
export class ConfusionMatrix {
  readonly counts: Float64Array;
  constructor(readonly classes: number) {
    this.counts = new Float64Array(classes * classes);
  }

  add(prediction: ClassMask, target: ClassMask, ignoreIndex: number): void {
    const k = this.classes;
    const t = target.data;
    const p = prediction.data;
    for (let i = 0; i < t.length; i++) {
      const truth = t[i]!;
      if (truth === ignoreIndex) continue;
      this.counts[truth * k + p[i]!]! += 1;
    }
  }

  /** IoU of every class; null for a class in neither targets nor predictions. */
  iou(): (number | null)[] {
    const k = this.classes;
    return Array.from({ length: k }, (_, c) => {
      let row = 0;
      let col = 0;
      for (let j = 0; j < k; j++) {
        row += this.counts[c * k + j]!;
        col += this.counts[j * k + c]!;
      }
      const tp = this.counts[c * k + c]!;
      const union = row + col - tp;
      return union > 0 ? tp / union : null;
    });
  }

  pixelAccuracy(): number | null {
    let diag = 0;
    let total = 0;
    for (let c = 0; c < this.classes; c++) diag += this.counts[c * this.classes + c]!;
    for (const v of this.counts) total += v;
    return total > 0 ? diag / total : null;
  }
}

class SegmentMetric implements MetricAccumulator<ClassMask, ClassMask> {
  private readonly matrix: ConfusionMatrix;
  private n = 0;
  constructor(private readonly layout: OutputLayout) {
    this.matrix = new ConfusionMatrix(layoutClassCount(layout)!);
  }

  add(prediction: ClassMask, target: ClassMask): void {
    this.matrix.add(prediction, target, withDefaults(this.layout).ignoreIndex);
    this.n++;
  }

  summary(): TaskMetric {
    const ious = this.matrix.iou();
    const present = ious.filter((v): v is number => v !== null);
    const miou = present.length ? present.reduce((a, b) => a + b, 0) / present.length : null;
    const names = this.layout.classes;
    const perClass: Record<string, number | null> = {};
    ious.forEach((v, c) => (perClass[Array.isArray(names) ? names[c]! : String(c)] = v));
    return {
      task: 'segment',
      primary: 'mIoU',
      value: miou,
      values: { mIoU: miou, pixelAccuracy: this.matrix.pixelAccuracy() },
      perClass,
      n: this.n,
      notes: miou === null ? ['no scored pixel: every target pixel is the ignore index'] : [],
    };
  }
}

export const segmentTask: Task<ClassMask, ClassMask> = {
  name: 'segment',
  describe: 'argmax class masks from [N,K,H,W] logits; mIoU and pixel accuracy',
  check(output, layout, source) {
    const { dims } = output;
    if (dims.length !== 4 || dims[1]! < 2)
      throw new UserError(
        `output '${layout.output}' is [${dims.join(',')}]; a segmenter's is [N,K,H,W] with K > 1 class channels`,
        source,
      );
    const named = layoutClassCount(layout);
    if (named !== undefined && named !== dims[1])
      throw new UserError(
        `the layout names ${named} classes but output '${layout.output}' has ${dims[1]} channels`,
        source,
      );
  },
  complete(output, layout) {
    return { ...layout, classes: layout.classes ?? output.dims[1]! };
  },
  decode(output) {
    return Array.from({ length: output.dims[0]! }, (_, i) => argmaxMask(output, i));
  },
  asTarget(prediction) {
    return prediction;
  },
  metric(layout) {
    return new SegmentMetric(layout);
  },
};
