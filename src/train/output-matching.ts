import { DataType, tensorType, Value } from '../ir/index.js';
import { UserError } from '../errors.js';
import type { Emitter } from './emitter.js';

/**
 * How one model output is matched to the original model's (label-free distillation, docs/finetune.md):
 * - `mse`: squared error weighted per channel (axis 1) by `weights`, the inverse of each channel's variance
 *   in the original's outputs, so that boxes in pixels and scores in [0, 1] weigh alike;
 * - `bce`: binary cross-entropy against the original's values, for probability and score maps in [0, 1];
 * - `softmax`: KL divergence from the original's softmax over axis 1 to the student's, for class logits (a
 *   segmenter's [N, C, H, W]), whose argmax is what counts;
 * - `detect`: an ultralytics detection export [N, 4 + nc, anchors] (boxes cx, cy, w, h in pixels, then sigmoid
 *   class scores): binary cross-entropy on the score rows, and the box rows' error relative to the original's
 *   box size (w, h, w, h, at least one pixel), r, costing r² / (1 + r²) (bounded, as 1 - IoU is), each anchor
 *   weighted by the original's best class score there, so that the boxes the original detects count and the
 *   thousands of background anchors do not; both terms are sums divided by the sum of those weights, at least
 *   1 (ultralytics divides by max(its target scores' sum, 1)).
 * `mse`, `bce` and `softmax` are means over the output's elements (`softmax`: over the positions).
 */
export interface OutputMatch {
  kind: 'mse' | 'bce' | 'softmax' | 'detect';
  /** `mse`: one weight per channel of axis 1 (or one for the whole output). */
  weights?: Float32Array;
  /** `detect`: the weight of the box term against the score term (default 1). */
  boxGain?: number;
}

/** The loss head of output matching: the loss, and for every output the gradient that seeds the backward. */
export interface MatchingHead {
  loss: Value;
  /** Per output, in graph output order: the teacher's values as a graph input. */
  teachers: Value[];
  seeds: [Value, Value][];
}

/** Rows of a detection output before the class scores: cx, cy, w, h. */
export const BOX_ROWS = 4;

/**
 * Whether an output is an ultralytics detection export [N, 4 + nc, anchors], from its rank and the range of
 * each row (axis 1): box rows with values beyond [0, 1] (pixels), then class score rows all within [0, 1].
 */
export function looksLikeDetection(rank: number, rows: readonly { min: number; max: number }[]): boolean {
  const inUnit = (c: { min: number; max: number }): boolean => c.min >= 0 && c.max <= 1;
  return (
    rank === 3 &&
    rows.length > BOX_ROWS &&
    rows.slice(0, BOX_ROWS).some((c) => !inUnit(c)) &&
    rows.slice(BOX_ROWS).every(inUnit)
  );
}

/** Probabilities are clipped this far from 0 and 1 before their logarithms. */
const EPS = 1e-6;

/**
 * Emits sum over outputs of each output's match loss against a teacher input of the same shape, with the
 * gradients written out (the backward starts from them, as from the logits' gradient of cross-entropy).
 */
export function emitOutputMatching(
  le: Emitter,
  outputs: readonly Value[],
  shapeOf: (v: Value) => number[] | undefined,
  matches: readonly OutputMatch[],
  file: string | undefined,
): MatchingHead {
  if (matches.length !== outputs.length)
    throw new UserError(
      `output matching needs one rule per output (${outputs.length}), got ${matches.length}`,
      file,
    );
  const teachers: Value[] = [];
  const seeds: [Value, Value][] = [];
  const losses: Value[] = [];
  outputs.forEach((out, i) => {
    const shape = shapeOf(out);
    if (!shape) throw new UserError(`output '${out.name}' has no static shape at the batch size`, file);
    const teacher = new Value(`teacher_output_${i}`, tensorType(DataType.FLOAT, shape));
    teachers.push(teacher);
    const n = shape.reduce((a, b) => a * b, 1);
    const m = matches[i]!;
    const { loss, grad } =
      m.kind === 'bce'
        ? binaryCrossEntropy(le, out, teacher, n)
        : m.kind === 'softmax'
          ? softmaxDivergence(le, out, teacher, n / (shape[1] ?? 1))
          : m.kind === 'detect'
            ? detectionMatch(le, out, teacher, shape, m.boxGain ?? 1, file)
            : weightedSquaredError(le, out, teacher, n, shape, m.weights);
    losses.push(loss);
    seeds.push([out, grad]);
  });
  return { loss: le.sum(losses), teachers, seeds };
}

function weightedSquaredError(
  le: Emitter,
  s: Value,
  t: Value,
  n: number,
  shape: number[],
  weights: Float32Array | undefined,
): { loss: Value; grad: Value } {
  const diff = le.sub(s, t);
  let weighted = diff;
  if (weights && weights.length > 1) {
    if (shape.length < 2 || shape[1] !== weights.length)
      throw new UserError(
        `per-channel weights (${weights.length}) do not match the output's axis 1 (${shape[1]})`,
      );
    const dims = shape.map((d, i) => (i === 1 ? d : 1));
    weighted = le.mul(diff, le.floats(weights, dims, 'match_weights'));
  } else if (weights) weighted = le.scale(diff, weights[0]!);
  return {
    loss: le.scale(le.op('ReduceSum', [le.mul(weighted, diff)], { keepdims: 0 }), 1 / n),
    grad: le.scale(weighted, 2 / n),
  };
}

function binaryCrossEntropy(le: Emitter, s: Value, t: Value, n: number): { loss: Value; grad: Value } {
  const p = le.op('Clip', [s, le.scalar(EPS), le.scalar(1 - EPS)]);
  const q = le.sub(le.scalar(1), p);
  const perElement = le.add(le.mul(t, le.op('Log', [p])), le.mul(le.sub(le.scalar(1), t), le.op('Log', [q])));
  // d/dp of -(t log p + (1 - t) log(1 - p)) is (p - t) / (p (1 - p)).
  const grad = le.scale(le.op('Div', [le.sub(p, t), le.mul(p, q)]), 1 / n);
  return { loss: le.scale(le.op('ReduceSum', [perElement], { keepdims: 0 }), -1 / n), grad };
}

/** KL(softmax(t) || softmax(s)) over axis 1, the mean over the other positions; d/ds = softmax(s) - softmax(t). */
function softmaxDivergence(le: Emitter, s: Value, t: Value, positions: number): { loss: Value; grad: Value } {
  const logS = le.op('LogSoftmax', [s], { axis: 1 });
  const logT = le.op('LogSoftmax', [t], { axis: 1 });
  const pT = le.op('Exp', [logT]);
  const perElement = le.mul(pT, le.sub(logT, logS));
  const grad = le.scale(le.sub(le.op('Exp', [logS]), pT), 1 / positions);
  return { loss: le.scale(le.op('ReduceSum', [perElement], { keepdims: 0 }), 1 / positions), grad };
}

/**
 * The `detect` rule's loss is a sum over the detected anchors, not a mean over every element as `mse`'s is, so
 * its gradients are some 50x larger: scaled by this, the batched label-free rate (0.01) steps as 0.003 did
 * unscaled. Measured on the trained SynthDet detector at 50% MACs (compensated start, one epoch of 300 images in
 * batches of 16; mAP@0.5:0.95 on a tuning split): unscaled 0.001 → 0.318, 0.003 → 0.387, 0.01 diverged
 * (the loss rose from 2.7 to 9-15) → 0.008.
 */
export const DETECT_GAIN = 0.3;

/** The `detect` rule (see OutputMatch): score rows by BCE, box rows relative to the box size, per anchor. */
function detectionMatch(
  le: Emitter,
  s: Value,
  t: Value,
  shape: number[],
  boxGain: number,
  file: string | undefined,
): { loss: Value; grad: Value } {
  const rows = shape[1] ?? 0;
  if (shape.length !== 3 || rows <= BOX_ROWS)
    throw new UserError(
      `the detect rule needs an output [N, 4 + classes, anchors], not [${shape.join(', ')}]`,
      file,
    );
  const box = (v: Value): Value => le.slice(v, [0], [BOX_ROWS], [1]);
  const cls = (v: Value): Value => le.slice(v, [BOX_ROWS], [rows], [1]);
  const tCls = cls(t);
  // Per anchor, the original's best score: [N, 1, A]; the sum over the batch normalises both terms.
  const anchorWeight =
    le.opset >= 18
      ? le.op('ReduceMax', [tCls, le.ints([1])], { keepdims: 1 })
      : le.op('ReduceMax', [tCls], { axes: [1], keepdims: 1 });
  // ultralytics' max(target score sum, 1): a batch where the original detects nothing is not blown up.
  const norm = le.scale(
    le.op('Reciprocal', [le.op('Max', [le.op('ReduceSum', [anchorWeight], { keepdims: 0 }), le.scalar(1)])]),
    DETECT_GAIN,
  );
  const p = le.op('Clip', [cls(s), le.scalar(EPS), le.scalar(1 - EPS)]);
  const q = le.sub(le.scalar(1), p);
  const bce = le.add(le.mul(tCls, le.op('Log', [p])), le.mul(le.sub(le.scalar(1), tCls), le.op('Log', [q])));
  const clsLoss = le.scale(le.mul(le.op('ReduceSum', [bce], { keepdims: 0 }), norm), -1);
  const clsGrad = le.mul(le.op('Div', [le.sub(p, tCls), le.mul(p, q)]), norm);
  // r = (s - t) / size per box row, size = the original's (w, h, w, h), at least a pixel; each row costs
  // r² / (1 + r²), bounded by 1 as 1 - IoU is: a background anchor's box (a pixel wide, tens of pixels off)
  // weighs its score and no more. d/ds = 2 r / (1 + r²)² / size.
  const tBox = box(t);
  const wh = le.op('Max', [le.slice(tBox, [2], [4], [1]), le.scalar(1)]);
  const size = le.op('Concat', [wh, wh], { axis: 1 });
  const r = le.op('Div', [le.sub(box(s), tBox), size]);
  const onePlus = le.add(le.scalar(1), le.mul(r, r));
  const perRow = le.op('Div', [le.mul(r, r), onePlus]);
  const boxLoss = le.scale(
    le.mul(le.op('ReduceSum', [le.mul(anchorWeight, perRow)], { keepdims: 0 }), norm),
    boxGain,
  );
  const dRow = le.op('Div', [r, le.mul(le.mul(onePlus, onePlus), size)]);
  const boxGrad = le.scale(le.mul(le.mul(anchorWeight, dRow), norm), 2 * boxGain);
  return {
    loss: le.add(clsLoss, boxLoss),
    grad: le.op('Concat', [boxGrad, clsGrad], { axis: 1 }),
  };
}
