import { DataType, tensorType, Value } from '../ir/index.js';
import { UserError } from '../errors.js';
import type { Emitter } from './emitter.js';

/**
 * How one model output is matched to the original model's (label-free distillation, docs/finetune.md):
 * - `mse`: squared error weighted per channel (axis 1) by `weights`, the inverse of each channel's variance
 *   in the original's outputs, so that boxes in pixels and scores in [0, 1] weigh alike;
 * - `bce`: binary cross-entropy against the original's values, for probability and score maps in [0, 1].
 * Both are means over the output's elements.
 */
export interface OutputMatch {
  kind: 'mse' | 'bce';
  /** `mse`: one weight per channel of axis 1 (or one for the whole output). */
  weights?: Float32Array;
}

/** The loss head of output matching: the loss, and for every output the gradient that seeds the backward. */
export interface MatchingHead {
  loss: Value;
  /** Per output, in graph output order: the teacher's values as a graph input. */
  teachers: Value[];
  seeds: [Value, Value][];
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
    const { loss, grad } =
      matches[i]!.kind === 'bce'
        ? binaryCrossEntropy(le, out, teacher, n)
        : weightedSquaredError(le, out, teacher, n, shape, matches[i]!.weights);
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
