import type { Box, Detection, GroundTruthBox } from './types.js';

/**
 * Detection math: ultralytics' non-maximum suppression and COCO's mAP (pycocotools' evaluateImg and
 * accumulate, 101-point interpolated precision). Kept free of I/O so the tests can hold it against an
 * independent reference.
 */

export interface NmsOptions {
  /** Candidates need a class score strictly above this (ultralytics' validation: 0.001). */
  conf: number;
  /** A box whose IoU with a kept box of its class is strictly above this is dropped (validation: 0.7). */
  iou: number;
  /** Boxes kept per image, best first (ultralytics: 300). */
  maxDet: number;
  /** Candidates passed to NMS, best first (default MAX_NMS). */
  maxNms?: number;
}

/** Candidates NMS takes, best first (ultralytics' max_nms). */
export const MAX_NMS = 30000;

/** Intersection over union of two corner boxes; 0 when either has no area. */
export function boxIou(a: Box, b: Box): number {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * ultralytics' `non_max_suppression` as its validator calls it (multi_label=True, class-aware): every
 * (box, class) pair whose score is above `conf` is a candidate; candidates are taken best first (ties in
 * anchor, then class order) and one is dropped when it overlaps a kept box of the same class by more than
 * `iou`; the best `maxDet` survivors are returned, best first. ultralytics separates the classes by offsetting
 * the boxes in float32; the per-class loop here is the same suppression in double precision.
 */
export function nonMaxSuppression(candidates: Detection[], options: NmsOptions): Detection[] {
  const order = candidates.filter((c) => c.score > options.conf);
  order.sort((a, b) => b.score - a.score); // stable: equal scores keep anchor/class order
  const cap = options.maxNms ?? MAX_NMS;
  if (order.length > cap) order.length = cap;
  const keptByClass = new Map<number, Box[]>();
  const kept: Detection[] = [];
  for (const d of order) {
    let same = keptByClass.get(d.cls);
    if (!same) keptByClass.set(d.cls, (same = []));
    if (same.some((k) => boxIou(k, d.box) > options.iou)) continue;
    same.push(d.box);
    kept.push(d);
    if (kept.length === options.maxDet) break;
  }
  return kept;
}

/** COCO's IoU thresholds, 0.5:0.05:0.95, computed as numpy's linspace computes them. */
export const COCO_IOU_THRESHOLDS: readonly number[] = linspace(0.5, 0.95, 10);
/** COCO's recall points, 0:0.01:1 (numpy linspace). */
export const COCO_RECALL_POINTS: readonly number[] = linspace(0, 1, 101);

function linspace(start: number, stop: number, num: number): number[] {
  const step = (stop - start) / (num - 1);
  return Array.from({ length: num }, (_, i) => (i === num - 1 ? stop : i * step + start));
}

/** One image's matches for one class (pycocotools' evaluateImg, area 'all', no crowd boxes). */
interface ImageClassMatches {
  scores: number[];
  /** [threshold][detection]: matched a ground-truth box. */
  matched: Uint8Array[];
  groundTruths: number;
}

/**
 * pycocotools' evaluateImg for one image and class: detections sorted by score (stable), cut to `maxDets`,
 * each matched greedily at every IoU threshold to the unmatched ground-truth box of highest IoU (at least the
 * threshold; a later box of equal IoU wins, as there).
 */
function matchImageClass(
  dets: Detection[],
  gts: GroundTruthBox[],
  maxDets: number,
  thresholds: readonly number[],
): ImageClassMatches {
  const sorted = [...dets].sort((a, b) => b.score - a.score).slice(0, maxDets);
  const ious = sorted.map((d) => gts.map((g) => boxIou(d.box, g.box)));
  const matched = thresholds.map((t) => {
    const gtTaken = new Uint8Array(gts.length);
    const out = new Uint8Array(sorted.length);
    for (let d = 0; d < sorted.length; d++) {
      let best = Math.min(t, 1 - 1e-10);
      let m = -1;
      for (let g = 0; g < gts.length; g++) {
        if (gtTaken[g]) continue;
        if (ious[d]![g]! < best) continue;
        best = ious[d]![g]!;
        m = g;
      }
      if (m < 0) continue;
      gtTaken[m] = 1;
      out[d] = 1;
    }
    return out;
  });
  return { scores: sorted.map((d) => d.score), matched, groundTruths: gts.length };
}

export interface CocoOptions {
  classes: number;
  /** Detections per image and class (pycocotools' maxDets for AP: 100). */
  maxDets?: number;
}

export interface CocoResult {
  /** Mean over classes with ground truth of AP at IoU 0.5; null without any ground-truth box. */
  map50: number | null;
  /** Mean over classes with ground truth and the ten thresholds 0.5:0.95. */
  map5095: number | null;
  /** Per class: AP50 and AP50-95, null for a class without ground truth. */
  perClass: { ap50: number | null; ap5095: number | null; groundTruths: number; detections: number }[];
  images: number;
  groundTruths: number;
  detections: number;
}

/**
 * Accumulates images for COCO's bbox mAP: `add` once per image in order, `result` at the end. The same
 * numbers as pycocotools' COCOeval (iouType bbox, area 'all', maxDets 100) on the same boxes, with image ids
 * in `add` order.
 */
export class CocoAccumulator {
  private readonly perClass: ImageClassMatches[][];
  private images = 0;
  private readonly maxDets: number;

  constructor(private readonly options: CocoOptions) {
    this.perClass = Array.from({ length: options.classes }, () => []);
    this.maxDets = options.maxDets ?? 100;
  }

  add(dets: Detection[], gts: GroundTruthBox[]): void {
    this.images++;
    for (let c = 0; c < this.options.classes; c++) {
      const d = dets.filter((x) => x.cls === c);
      const g = gts.filter((x) => x.cls === c);
      if (d.length === 0 && g.length === 0) continue;
      this.perClass[c]!.push(matchImageClass(d, g, this.maxDets, COCO_IOU_THRESHOLDS));
    }
  }

  result(): CocoResult {
    const perClass = this.perClass.map((entries) => {
      const aps = classPrecision(entries);
      const groundTruths = entries.reduce((s, e) => s + e.groundTruths, 0);
      const detections = entries.reduce((s, e) => s + e.scores.length, 0);
      if (!aps) return { ap50: null, ap5095: null, groundTruths, detections };
      return { ap50: aps[0]!, ap5095: mean(aps), groundTruths, detections };
    });
    const withGt = perClass.filter((c) => c.ap50 !== null);
    return {
      map50: withGt.length ? mean(withGt.map((c) => c.ap50!)) : null,
      map5095: withGt.length ? mean(withGt.map((c) => c.ap5095!)) : null,
      perClass,
      images: this.images,
      groundTruths: perClass.reduce((s, c) => s + c.groundTruths, 0),
      detections: perClass.reduce((s, c) => s + c.detections, 0),
    };
  }
}

/**
 * pycocotools' accumulate for one class: the AP (mean of the 101 interpolated precisions) at each IoU
 * threshold, or undefined when the class has no ground-truth box.
 */
function classPrecision(entries: ImageClassMatches[]): number[] | undefined {
  const groundTruths = entries.reduce((s, e) => s + e.groundTruths, 0);
  if (groundTruths === 0) return undefined;
  const scores = entries.flatMap((e) => e.scores);
  const order = scores.map((_, i) => i).sort((a, b) => scores[b]! - scores[a]!); // mergesort: stable
  return COCO_IOU_THRESHOLDS.map((_, t) => {
    const matched = entries.flatMap((e) => Array.from(e.matched[t]!));
    const nd = order.length;
    const precision = new Float64Array(nd);
    const recall = new Float64Array(nd);
    let tp = 0;
    let fp = 0;
    for (let i = 0; i < nd; i++) {
      if (matched[order[i]!]) tp++;
      else fp++;
      recall[i] = tp / groundTruths;
      // pycocotools divides by tp + fp + np.spacing(1), which only turns a perfect 1 into 0.9999999999999998
      // (tp + fp is never 0 here); without it a model measured against itself scores 1 exactly.
      precision[i] = tp / (fp + tp);
    }
    for (let i = nd - 1; i > 0; i--) if (precision[i]! > precision[i - 1]!) precision[i - 1] = precision[i]!;
    let sum = 0;
    let i = 0;
    for (const r of COCO_RECALL_POINTS) {
      while (i < nd && recall[i]! < r) i++; // searchsorted(side='left')
      if (i >= nd) break;
      sum += precision[i]!;
    }
    return sum / COCO_RECALL_POINTS.length;
  });
}

function mean(values: readonly number[]): number {
  let s = 0;
  for (const v of values) s += v;
  return s / values.length;
}
