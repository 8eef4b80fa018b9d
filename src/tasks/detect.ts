import { UserError } from '../errors.js';
import { CocoAccumulator, MAX_NMS, nonMaxSuppression } from './detect-metrics.js';
import { layoutClassCount, withDefaults, type BoxLayout, type OutputLayout } from './layout.js';
import type {
  Detection,
  GroundTruthBox,
  MetricAccumulator,
  OutputTensor,
  Task,
  TaskMetric,
} from './types.js';

/** Where the boxes run: the layout's word, else the longer of the two axes (ultralytics: [1, 84, 8400]). */
export function boxLayoutOf(dims: readonly number[], layout: OutputLayout): BoxLayout {
  if (layout.boxes) return layout.boxes;
  return dims[1]! <= dims[2]! ? '[1,4+nc,N]' : '[1,N,4+nc]';
}

/** Classes in a detector's output: the layout's count, else all values past the 4 box coordinates. */
export function detectClassCount(dims: readonly number[], layout: OutputLayout): number {
  const values = boxLayoutOf(dims, layout) === '[1,4+nc,N]' ? dims[1]! : dims[2]!;
  return layoutClassCount(layout) ?? values - 4;
}

/**
 * The (box, class, score) candidates of one image that NMS takes, corners in input pixels: the ultralytics
 * export layout (cx, cy, w, h, then one sigmoid score per class) on either axis order, scores above `conf`, in
 * anchor then class order. Past `limit` passing scores only the best `limit` are kept (those NMS would take
 * after its stable sort: every score above the limit-th, then its ties in order), without an object for each
 * of the rest: a random-init yolov8n at 640 passes 672,000 (box, class) pairs per image at conf 0.001.
 */
export function decodeBoxes(
  output: OutputTensor,
  image: number,
  layout: OutputLayout,
  conf: number,
  limit = MAX_NMS,
): Detection[] {
  const { dims, data } = output;
  const channelsFirst = boxLayoutOf(dims, layout) === '[1,4+nc,N]';
  const anchors = channelsFirst ? dims[2]! : dims[1]!;
  const values = channelsFirst ? dims[1]! : dims[2]!;
  const nc = detectClassCount(dims, layout);
  const base = image * anchors * values;
  const at = channelsFirst
    ? (a: number, v: number) => data[base + v * anchors + a]!
    : (a: number, v: number) => data[base + a * values + v]!;
  const floor = scoreFloor(anchors, nc, (a, c) => at(a, 4 + c), conf, limit);
  const out: Detection[] = [];
  let ties = limit - floor.above;
  for (let a = 0; a < anchors; a++) {
    for (let c = 0; c < nc; c++) {
      const score = at(a, 4 + c);
      if (!(score > conf) || score < floor.score) continue;
      if (score === floor.score && floor.capped && ties-- <= 0) continue;
      const cx = at(a, 0);
      const cy = at(a, 1);
      const w = at(a, 2);
      const h = at(a, 3);
      out.push({ box: [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], score, cls: c });
    }
  }
  return out;
}

/**
 * The lowest score among the best `limit` above `conf` (-Infinity when no more pass), and how many scores lie
 * strictly above it.
 */
function scoreFloor(
  anchors: number,
  nc: number,
  score: (a: number, c: number) => number,
  conf: number,
  limit: number,
): { score: number; above: number; capped: boolean } {
  const passing = new Float32Array(anchors * nc);
  let n = 0;
  for (let a = 0; a < anchors; a++)
    for (let c = 0; c < nc; c++) {
      const s = score(a, c);
      if (s > conf) passing[n++] = s;
    }
  if (n <= limit) return { score: -Infinity, above: 0, capped: false };
  const floor = kthLargest(passing.subarray(0, n), limit);
  let above = 0;
  for (let i = 0; i < n; i++) if (passing[i]! > floor) above++;
  return { score: floor, above, capped: true };
}

/** The k-th largest value of `xs` (1-based), by quickselect; `xs` is reordered. */
function kthLargest(xs: Float32Array, k: number): number {
  const target = k - 1;
  let lo = 0;
  let hi = xs.length - 1;
  while (lo < hi) {
    const pivot = xs[(lo + hi) >>> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (xs[i]! > pivot) i++;
      while (xs[j]! < pivot) j--;
      if (i <= j) {
        const t = xs[i]!;
        xs[i++] = xs[j]!;
        xs[j--] = t;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return xs[target]!;
  }
  return xs[target]!;
}

class DetectMetric implements MetricAccumulator<Detection[], GroundTruthBox[]> {
  private coco: CocoAccumulator | undefined;
  private n = 0;

  constructor(
    private readonly layout: OutputLayout,
    private readonly fidelity: boolean,
  ) {}

  add(prediction: Detection[], target: GroundTruthBox[]): void {
    this.coco ??= new CocoAccumulator({ classes: this.classes(prediction, target) });
    this.coco.add(prediction, target);
    this.n++;
  }

  /** The layout's class count (the runner fills it in from the output's shape), else the largest class seen. */
  private classes(prediction: Detection[], target: GroundTruthBox[]): number {
    const named = layoutClassCount(this.layout);
    if (named !== undefined) return named;
    return Math.max(1, ...prediction.map((d) => d.cls + 1), ...target.map((g) => g.cls + 1));
  }

  summary(): TaskMetric {
    const r = this.coco?.result();
    const notes: string[] = [];
    if (r && r.groundTruths === 0)
      notes.push(
        this.fidelity
          ? `the original model detects nothing above conf ${withDefaults(this.layout).referenceConf}: no reference boxes`
          : 'the labels hold no box: mAP is undefined',
      );
    return {
      task: 'detect',
      primary: 'mAP50-95',
      value: r?.map5095 ?? null,
      values: { mAP50: r?.map50 ?? null, 'mAP50-95': r?.map5095 ?? null },
      counts: { boxes: r?.groundTruths ?? 0, detections: r?.detections ?? 0 },
      perClass: Object.fromEntries(
        (r?.perClass ?? []).map((c, i) => [
          Array.isArray(this.layout.classes) ? this.layout.classes[i]! : String(i),
          c.ap5095,
        ]),
      ),
      n: this.n,
      notes,
    };
  }
}

export const detectTask: Task<Detection[], GroundTruthBox[]> = {
  name: 'detect',
  describe:
    'boxes from the ultralytics export layout, NMS as its validation does, COCO mAP@0.5 and @0.5:0.95',
  check(output, layout, source) {
    const { dims } = output;
    if (dims.length !== 3)
      throw new UserError(
        `output '${layout.output}' is [${dims.join(',')}]; a detector's is [1,4+nc,N] or [1,N,4+nc]`,
        source,
      );
    const boxes = boxLayoutOf(dims, layout);
    const values = boxes === '[1,4+nc,N]' ? dims[1]! : dims[2]!;
    const nc = detectClassCount(dims, layout);
    if (nc < 1 || 4 + nc > values)
      throw new UserError(
        `output '${layout.output}' [${dims.join(',')}] read as ${boxes} holds ${values} values per box, ` +
          `not 4 + ${nc} classes; set "boxes" or "classes" in the layout file`,
        source,
      );
  },
  complete(output, layout) {
    return {
      ...layout,
      boxes: boxLayoutOf(output.dims, layout),
      classes: layout.classes ?? detectClassCount(output.dims, layout),
    };
  },
  decode(output, layout) {
    const { conf, iou, maxDet } = withDefaults(layout);
    const images = output.dims[0]!;
    return Array.from({ length: images }, (_, i) =>
      nonMaxSuppression(decodeBoxes(output, i, layout, conf), { conf, iou, maxDet }),
    );
  },
  asTarget(prediction, layout) {
    const { referenceConf } = withDefaults(layout);
    return prediction.filter((d) => d.score > referenceConf).map((d) => ({ box: d.box, cls: d.cls }));
  },
  metric(layout, fidelity) {
    return new DetectMetric(layout, fidelity);
  },
};
