import { UserError } from '../errors.js';
import { withDefaults } from './layout.js';
import type { MetricAccumulator, Task, TaskMetric } from './types.js';

/** C maps of one image, channel-major, after the layout's activation. */
export interface DenseMaps {
  data: Float32Array;
  channels: number;
  height: number;
  width: number;
}

/**
 * Any probability or regression map (text, saliency, depth): per channel, the IoU of the maps thresholded at
 * `threshold` (intersection and union summed over all images, then averaged over the channels that have any
 * foreground), and the mean absolute difference of the maps over every value.
 */
class DenseMetric implements MetricAccumulator<DenseMaps, DenseMaps> {
  private intersection: Float64Array | undefined;
  private union: Float64Array | undefined;
  private absSum = 0;
  private values = 0;
  private n = 0;
  constructor(private readonly threshold: number) {}

  add(prediction: DenseMaps, target: DenseMaps): void {
    const { channels } = prediction;
    this.intersection ??= new Float64Array(channels);
    this.union ??= new Float64Array(channels);
    const plane = prediction.height * prediction.width;
    const thr = this.threshold;
    let counted = 0;
    for (let c = 0; c < channels; c++) {
      let inter = 0;
      let uni = 0;
      for (let i = c * plane; i < (c + 1) * plane; i++) {
        const p = prediction.data[i]!;
        const t = target.data[i]!;
        if (Number.isNaN(t)) continue; // outside the image (a letterbox border): not scored
        this.absSum += Math.abs(p - t);
        counted++;
        const a = p > thr;
        const b = t > thr;
        if (a && b) inter++;
        if (a || b) uni++;
      }
      this.intersection[c]! += inter;
      this.union[c]! += uni;
    }
    this.values += counted;
    this.n++;
  }

  summary(): TaskMetric {
    const ious: number[] = [];
    this.union?.forEach((u, c) => u > 0 && ious.push(this.intersection![c]! / u));
    const miou = ious.length ? ious.reduce((a, b) => a + b, 0) / ious.length : null;
    return {
      task: 'dense',
      primary: 'IoU',
      value: miou,
      values: { IoU: miou, meanAbsDiff: this.values ? this.absSum / this.values : null },
      n: this.n,
      notes:
        miou === null && this.n > 0
          ? [`no map has a value above the threshold ${this.threshold}: the IoU is undefined`]
          : [],
    };
  }
}

export const denseTask: Task<DenseMaps, DenseMaps> = {
  name: 'dense',
  describe: 'probability or regression maps [N,C,H,W]: IoU of the thresholded maps, mean absolute difference',
  check(output, layout, source) {
    if (output.dims.length !== 4)
      throw new UserError(
        `output '${layout.output}' is [${output.dims.join(',')}]; dense maps are [N,C,H,W]`,
        source,
      );
  },
  complete(_output, layout) {
    return layout;
  },
  decode(output, layout) {
    const [n, channels, height, width] = output.dims as [number, number, number, number];
    const size = channels * height * width;
    const sigmoid = withDefaults(layout).activation === 'sigmoid';
    return Array.from({ length: n }, (_, i) => {
      const data = output.data.slice(i * size, (i + 1) * size);
      if (sigmoid) for (let j = 0; j < size; j++) data[j] = 1 / (1 + Math.exp(-data[j]!));
      return { data, channels, height, width };
    });
  },
  asTarget(prediction) {
    return prediction;
  },
  metric(layout) {
    return new DenseMetric(withDefaults(layout).threshold);
  },
};
