import * as ort from 'onnxruntime-node';
import { batches } from '../data/batches.js';
import { mixSeed, mulberry32, shuffle } from '../data/prng.js';
import type { AnyDataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { UserError } from '../errors.js';
import { serializeModel, type Model } from '../ir/index.js';
import { createSession, feedsOf, type ModelSession } from '../runtime/session.js';
import { isTokenSet, tokenInputShapes } from '../data/tokens.js';
import type { Device } from '../runtime/device.js';
import {
  carriedTensors,
  startingTensors,
  stateFeeds,
  stepScalars,
  withWeights,
  type StepProgress,
} from './loop.js';
import type { SgdOptions } from './optimizer.js';
import { BOX_ROWS, looksLikeDetection, type OutputMatch } from './output-matching.js';
import { learningRate } from './schedule.js';
import { buildStepGraph, STEP_SESSION_OPTIONS, type StepGraph } from './step-graph.js';

/** How each output is matched: chosen from the original's values (`auto`), or given. */
export type OutputKind = 'auto' | 'mse' | 'bce' | 'softmax' | 'detect';
export const OUTPUT_KINDS: readonly OutputKind[] = ['auto', 'mse', 'bce', 'softmax', 'detect'];

export interface DistillOptions {
  epochs: number;
  batchSize: number;
  lr: number;
  sgd?: SgdOptions;
  spec: PreprocessSpec;
  /** Train on at most this many images (the first of a seeded shuffle). */
  limit?: number;
  seed?: number;
  /** One per model output, or one for all; default `auto`. */
  outputKinds?: readonly OutputKind[];
  /**
   * Keep BN in inference mode (the original's statistics; gamma and beta still train). Default: with batches
   * under FROZEN_BN_BELOW images, whose own statistics are too noisy to normalise by.
   */
  frozenBatchNorm?: boolean;
  /** Sizes for the inputs' symbolic dims (`--input-shape`): the step graph is built at static shapes. */
  inputShapes?: Readonly<Record<string, readonly number[]>>;
  device?: Device;
  threads?: number;
  /** After every step; `accuracy` is NaN (there are no labels), `epoch` counts from 1 as fine-tuning's does. */
  onStep?: (p: StepProgress) => void;
}

export interface DistillResult {
  model: Model;
  /** The mean match loss of every epoch. */
  history: { epoch: number; loss: number; seconds: number }[];
  matches: OutputMatch[];
}

/** A run whose loss stopped being finite: the caller may keep what it had before it. */
export class TrainingDivergedError extends UserError {}

/**
 * Batches smaller than this train with BN frozen: a static export fixed at batch 1 has no batch statistics
 * worth the name (a YOLO P5 map at 64x64 input is 2x2). Larger batches normalise as fine-tuning does, which
 * conditions the steps better (a random-init UNet diverged at lr 0.01 frozen, and learned at 0.05 in train mode).
 */
export const FROZEN_BN_BELOW = 8;

/** Batches the matching rules are chosen from. */
const CALIBRATION_BATCHES = 2;

/**
 * Label-free recovery (docs/finetune.md, "Distillation without labels"): the pruned `student` is trained so
 * that every one of its outputs matches the original `teacher`'s on the same images, through the same step
 * graph as fine-tuning with an output-matching loss. Needs images only, whatever the task.
 */
export async function distillFromOriginal(
  student: Model,
  teacher: Model,
  dataset: AnyDataset,
  asked: DistillOptions,
): Promise<DistillResult> {
  if (!(Number.isInteger(asked.epochs) && asked.epochs > 0))
    throw new UserError(`the epoch count must be a positive integer, not ${asked.epochs}`);
  if (!(asked.lr > 0)) throw new UserError(`the learning rate must be positive, not ${asked.lr}`);
  const order = shuffled(dataset.length, asked.seed ?? 0).slice(0, asked.limit ?? dataset.length);
  // Fewer images than a batch (prune's default is 128): one batch of all of them.
  const B = Math.max(1, Math.min(asked.batchSize, order.length));
  const options = { ...asked, batchSize: B };
  const steps = Math.floor(order.length / B);
  if (steps < 1)
    throw new UserError(`the data has ${order.length} images, fewer than one batch of ${B}`, dataset.path);
  const runtime = { device: options.device, threads: options.threads };
  const teacherSession = await createSession(serializeModel(teacher), runtime);
  try {
    const matches = await chooseMatches(teacherSession, dataset, order, options);
    // A token set feeds every input of a text model at its sequence length.
    const tokens = isTokenSet(dataset) ? tokenInputShapes(dataset) : undefined;
    const step = await buildStepGraph(student, {
      batchSize: B,
      ...(options.inputShapes && { inputShapes: options.inputShapes }),
      ...(tokens && { inputShapes: { ...options.inputShapes, ...tokens }, multipleInputs: true }),
      sgd: options.sgd,
      matchOutputs: matches,
      frozenBatchNorm: options.frozenBatchNorm ?? B < FROZEN_BN_BELOW,
      blockedConvs: (options.device ?? 'cpu') === 'cpu',
    });
    const session = await createSession(serializeModel(step.model), {
      ...runtime,
      overrides: STEP_SESSION_OPTIONS,
    });
    try {
      const tensors = startingTensors(student, step);
      const history = await trainEpochs(step, session, teacherSession, dataset, order, options, tensors);
      return { model: withWeights(student, step, tensors, ''), history, matches };
    } finally {
      await session.release();
    }
  } finally {
    await teacherSession.release();
  }
}

async function trainEpochs(
  step: StepGraph,
  session: ModelSession,
  teacher: ModelSession,
  dataset: AnyDataset,
  order: Int32Array,
  options: DistillOptions,
  tensors: Map<string, Float32Array>,
): Promise<DistillResult['history']> {
  const B = options.batchSize;
  const steps = Math.floor(order.length / B);
  const feeds = stateFeeds(step, (name) => tensors.get(name));
  const carried = carriedTensors(step);
  const history: DistillResult['history'] = [];
  const outputs = teacher.session.outputNames;
  for (let epoch = 0; epoch < options.epochs; epoch++) {
    const started = performance.now();
    const indices = shuffled(order.length, mixSeed(options.seed ?? 0, epoch + 1)).map((k) => order[k]!);
    let sum = 0;
    let k = 0;
    for await (const batch of batches(dataset, {
      spec: options.spec,
      batchSize: B,
      indices: indices.slice(0, steps * B),
    })) {
      const inputs = feedsOf(batch, teacher.inputName);
      const target = await teacher.session.run(inputs);
      if (batch.feeds) Object.assign(feeds, inputs);
      else feeds[step.inputs.images] = inputs[teacher.inputName]!;
      outputs.forEach((name, i) => (feeds[step.inputs.teacherOutputs![i]!] = target[name] as ort.Tensor));
      const at = epoch * steps + k;
      const lr = learningRate(options.lr, at, options.epochs * steps);
      Object.assign(feeds, stepScalars(step, lr, at));
      const out = await session.session.run(feeds);
      for (const [from, to] of carried) feeds[to] = out[from] as ort.Tensor;
      const loss = (out[step.outputs.loss]!.data as Float32Array)[0]!;
      if (!Number.isFinite(loss))
        throw new TrainingDivergedError(
          `distillation diverged at epoch ${epoch + 1}, step ${k + 1} (loss ${loss}): lower the learning rate (--finetune-lr)`,
        );
      sum += loss;
      k++;
      const seconds = (performance.now() - started) / 1000;
      options.onStep?.({
        epoch: epoch + 1,
        epochs: options.epochs,
        step: k,
        stepsPerEpoch: steps,
        loss,
        accuracy: NaN,
        imagesPerSecond: (k * B) / Math.max(seconds, 1e-9),
      });
    }
    history.push({
      epoch: epoch + 1,
      loss: sum / Math.max(1, k),
      seconds: (performance.now() - started) / 1000,
    });
  }
  for (const name of tensors.keys()) tensors.set(name, (feeds[name]!.data as Float32Array).slice());
  return history;
}

/**
 * Per output, the loss that fits its values on the original's first batches: binary cross-entropy where every
 * value lies in [0, 1] (probability and score maps), else squared error weighted by each channel's inverse
 * variance (boxes in pixels and scores in one tensor weigh alike). `outputKinds` overrides the choice.
 */
async function chooseMatches(
  teacher: ModelSession,
  dataset: AnyDataset,
  order: Int32Array,
  options: DistillOptions,
): Promise<OutputMatch[]> {
  const names = teacher.session.outputNames;
  const kinds = options.outputKinds ?? ['auto'];
  if (kinds.length !== 1 && kinds.length !== names.length)
    throw new UserError(`give one output kind, or one per output (${names.length}: ${names.join(', ')})`);
  const stats = names.map(() => ({ min: Infinity, max: -Infinity, rank: 0, channels: [] as ChannelStats[] }));
  let seen = 0;
  const sample = order.slice(0, CALIBRATION_BATCHES * options.batchSize);
  for await (const batch of batches(dataset, {
    spec: options.spec,
    batchSize: options.batchSize,
    indices: sample,
  })) {
    const out = await teacher.session.run(feedsOf(batch, teacher.inputName));
    names.forEach((name, i) => accumulate(stats[i]!, out[name] as ort.Tensor));
    if (++seen >= CALIBRATION_BATCHES) break;
  }
  return names.map((name, i) => {
    const kind = kinds.length === 1 ? kinds[0]! : kinds[i]!;
    const s = stats[i]!;
    if (kind === 'softmax') return { kind: 'softmax' };
    if (kind === 'detect' || (kind === 'auto' && looksLikeDetection(s.rank, s.channels))) {
      if (s.rank !== 3 || s.channels.length <= BOX_ROWS)
        throw new UserError(
          `output '${name}' is not a detection output [N, 4 + classes, anchors]: the detect rule needs one`,
        );
      return { kind: 'detect' };
    }
    if (kind === 'bce' || (kind === 'auto' && s.min >= 0 && s.max <= 1)) {
      if (s.min < 0 || s.max > 1)
        throw new UserError(
          `output '${name}' has values outside [0, 1] (${s.min} to ${s.max}): binary cross-entropy needs probabilities`,
        );
      return { kind: 'bce' };
    }
    const variances = s.channels.map((c) => c.sq / c.n - (c.sum / c.n) ** 2);
    const floor = Math.max(1e-12, 1e-6 * Math.max(...variances));
    return { kind: 'mse', weights: Float32Array.from(variances, (v) => 1 / Math.max(v, floor)) };
  });
}

interface ChannelStats {
  n: number;
  sum: number;
  sq: number;
  min: number;
  max: number;
}

/** Running min, max and per-channel (axis 1) moments and ranges of an output. */
function accumulate(
  s: { min: number; max: number; rank: number; channels: ChannelStats[] },
  t: ort.Tensor,
): void {
  const data = t.data as Float32Array;
  const dims = t.dims.map(Number);
  s.rank = dims.length;
  const c = dims.length >= 2 ? dims[1]! : 1;
  const inner = dims.slice(2).reduce((a, b) => a * b, 1);
  while (s.channels.length < c) s.channels.push({ n: 0, sum: 0, sq: 0, min: Infinity, max: -Infinity });
  for (let i = 0; i < data.length; i++) {
    const x = data[i]!;
    if (x < s.min) s.min = x;
    if (x > s.max) s.max = x;
    const ch = s.channels[Math.floor(i / inner) % c]!;
    ch.n++;
    ch.sum += x;
    ch.sq += x * x;
    if (x < ch.min) ch.min = x;
    if (x > ch.max) ch.max = x;
  }
}

/** A seeded permutation of 0..n-1 (the data modules' PRNG, the same on every machine). */
function shuffled(n: number, seed: number): Int32Array {
  return shuffle(
    Int32Array.from({ length: n }, (_, i) => i),
    mulberry32(mixSeed(seed, 0xd157)),
  );
}
