import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { batches } from '../data/batches.js';
import type { Dataset } from '../data/dataset.js';
import { augmentationAt, type Augmentation, type PreprocessSpec } from '../data/preprocess.js';
import { mixSeed, mulberry32, shuffle } from '../data/prng.js';
import { balancedSubset } from '../data/subset.js';
import { UserError } from '../errors.js';
import { serializeModel } from '../ir/index.js';
import type { Model } from '../ir/model.js';
import type { Device } from '../runtime/device.js';
import { evaluate } from '../runtime/evaluate.js';
import { checkBatchNormVariances } from '../runtime/preflight.js';
import { createSession, type ModelSession } from '../runtime/session.js';
import { readCheckpoint, writeCheckpoint, type EpochRecord, type TrainingState } from './checkpoint.js';
import { adamCorrections, type SgdOptions } from './optimizer.js';
import { learningRate, type ScheduleOptions } from './schedule.js';
import {
  DEFAULT_ALPHA,
  DEFAULT_TEMPERATURE,
  STEP_SESSION_OPTIONS,
  buildStepGraph,
  type DistillGate,
  type Distillation,
  type StepGraph,
  type TrainedParam,
} from './step-graph.js';

export interface FinetuneOptions {
  epochs: number;
  batchSize: number;
  /** Peak learning rate. */
  lr: number;
  spec: PreprocessSpec;
  /** Sizes for the inputs' symbolic dims (`--input-shape`): the step graph is built at static shapes. */
  inputShapes?: Readonly<Record<string, readonly number[]>>;
  schedule?: ScheduleOptions;
  /** Warm-up length in epochs (may be fractional); converted to steps. */
  warmupEpochs?: number;
  sgd?: SgdOptions;
  labelSmoothing?: number;
  /** Seeds the subset, the shuffling and the augmentation. Default 0. */
  seed?: number;
  /** Train on a seeded class-balanced subset of this many images. */
  limit?: number;
  /** How much of `spec.augment` to apply (default `full`: its random crop and flip). */
  augment?: Augmentation;
  val?: Dataset;
  valIndices?: ArrayLike<number>;
  device?: Device;
  threads?: number;
  /** Written atomically after every epoch; with `resume`, a run continues from it. */
  checkpoint?: string;
  resume?: boolean;
  /** Stop (as if killed) once this many epochs are done in total; the checkpoint lets a later run resume. */
  stopAfterEpoch?: number;
  teacher?: { model: Model | string; temperature?: number; alpha?: number; gate?: DistillGate };
  /**
   * Sharpness-aware minimisation with this radius (0 or absent: off): each step takes its gradient at
   * w + rho g/|g|, two passes of the step graph (see StepGraphOptions.sharpnessAware), about twice the time.
   */
  sam?: number;
  onStep?: (p: StepProgress) => void;
  onEpoch?: (r: EpochRecord) => void;
}

export interface StepProgress {
  epoch: number;
  epochs: number;
  step: number;
  stepsPerEpoch: number;
  loss: number;
  accuracy: number;
  imagesPerSecond: number;
}

export interface FinetuneResult {
  /** The input model with the learned weights and BN statistics (the best validation epoch, else the last). */
  model: Model;
  history: EpochRecord[];
  best: { epoch: number; accuracy: number } | undefined;
  /** Epochs finished (less than `epochs` when stopped by `stopAfterEpoch`). */
  epochsDone: number;
  stepsPerEpoch: number;
  /** Mean milliseconds per step spent outside onnxruntime's run (feeds, data wait, bookkeeping). */
  overheadMsPerStep: number;
}

/**
 * Fine-tunes `model` on `dataset` through onnxruntime: one session runs the compiled training step
 * (see step-graph.ts); the previous step's output tensors are fed straight back as the next step's inputs.
 * Incomplete last batches are dropped (the step graph has a static batch size).
 */
export async function finetune(
  model: Model,
  dataset: Dataset,
  options: FinetuneOptions,
): Promise<FinetuneResult> {
  const B = options.batchSize;
  const seed = options.seed ?? 0;
  if (!(Number.isInteger(options.epochs) && options.epochs > 0))
    throw new UserError(`--epochs must be a positive integer, not ${options.epochs}`);
  if (!(options.lr > 0)) throw new UserError(`--lr must be positive, not ${options.lr}`);
  const rho = options.sam ?? 0;
  if (!(Number.isFinite(rho) && rho >= 0))
    throw new UserError(`the SAM radius must be a finite number >= 0, not ${options.sam}`);
  const indices =
    options.limit !== undefined
      ? balancedSubset(dataset.labels, options.limit, seed)
      : Int32Array.from(dataset.labels.keys());
  const stepsPerEpoch = Math.floor(indices.length / B);
  if (stepsPerEpoch < 1)
    throw new UserError(
      `the training data has ${indices.length} images, fewer than one batch of ${B}`,
      dataset.path,
    );
  const { step, state } = await prepareRun(model, dataset, options, indices, stepsPerEpoch);
  const runtime = { device: options.device, threads: options.threads };
  const session = await createSession(serializeModel(step.model), {
    ...runtime,
    overrides: STEP_SESSION_OPTIONS,
  });
  const teacher = options.teacher
    ? await createSession(
        typeof options.teacher.model === 'string'
          ? options.teacher.model
          : serializeModel(options.teacher.model),
        runtime,
      )
    : undefined;
  const run: TrainingRun = {
    model,
    dataset,
    options,
    indices,
    stepsPerEpoch,
    step,
    state,
    session,
    teacher,
    feeds: stateFeeds(step, (name) => state.tensors.get(name)),
    carried: carriedTensors(step),
    sam: rho > 0 ? samFeeds(step, rho) : undefined,
    schedule: {
      ...options.schedule,
      warmupSteps: Math.round((options.warmupEpochs ?? 0) * stepsPerEpoch),
    },
    overheadMs: 0,
    stepsRun: 0,
  };
  try {
    const stopAt = Math.min(options.epochs, options.stopAfterEpoch ?? options.epochs);
    for (let epoch = state.epoch; epoch < stopAt; epoch++) {
      const record = await trainEpoch(run, epoch);
      await finishEpoch(run, epoch, record);
    }
  } finally {
    await session.release();
    await teacher?.release();
  }
  const best = state.best && state.tensors.has(`best:${step.params[0]!.name}`) ? 'best:' : '';
  return {
    model: withWeights(model, step, state.tensors, best),
    history: state.history,
    best: state.best && state.history.some((h) => h.valAccuracy !== undefined) ? state.best : undefined,
    epochsDone: state.epoch,
    stepsPerEpoch,
    overheadMsPerStep: run.stepsRun ? run.overheadMs / run.stepsRun : 0,
  };
}

/** What the epochs of one fine-tuning run share. */
interface TrainingRun {
  model: Model;
  dataset: Dataset;
  options: FinetuneOptions;
  indices: Int32Array;
  stepsPerEpoch: number;
  step: StepGraph;
  state: TrainingState;
  session: ModelSession;
  teacher: ModelSession | undefined;
  /** The step's inputs; the previous step's outputs are fed straight back (`carried`: output -> input). */
  feeds: Record<string, ort.Tensor>;
  carried: (readonly [string, string])[];
  /** With SAM: the radius, and the zero shifts of the first pass of every step. */
  sam: { rho: ort.Tensor; zeroShifts: Record<string, ort.Tensor> } | undefined;
  schedule: ScheduleOptions;
  overheadMs: number;
  stepsRun: number;
}

/** The training step graph, and the state to start from (fresh, or a checked checkpoint with `--resume`). */
async function prepareRun(
  model: Model,
  dataset: Dataset,
  options: FinetuneOptions,
  indices: Int32Array,
  stepsPerEpoch: number,
): Promise<{ step: StepGraph; state: TrainingState }> {
  const step = await buildStepGraph(model, {
    batchSize: options.batchSize,
    sgd: options.sgd,
    labelSmoothing: options.labelSmoothing,
    sharpnessAware: (options.sam ?? 0) > 0,
    distillation: options.teacher ? distillationOf(options.teacher) : undefined,
    ...(options.inputShapes && { inputShapes: options.inputShapes }),
    // The blocked-layout conv ops exist on onnxruntime's CPU provider only.
    blockedConvs: (options.device ?? 'cpu') === 'cpu',
  });
  checkLabels(dataset, indices, step.numClasses, model.sourcePath);
  if (options.val)
    checkLabels(
      options.val,
      options.valIndices ?? Int32Array.from(options.val.labels.keys()),
      step.numClasses,
      model.sourcePath,
    );
  const fingerprint = fingerprintOf(step, dataset, options, indices.length);
  const state = initialState(model, step, fingerprint);
  if (options.resume && options.checkpoint && fs.existsSync(options.checkpoint)) {
    const saved = readCheckpoint(options.checkpoint);
    if (saved.modelHash !== state.modelHash)
      throw new UserError(
        'the checkpoint was written for another model (its starting weights differ); resume needs the model it started from',
        options.checkpoint,
      );
    if (saved.fingerprint !== fingerprint)
      throw new UserError(
        'the checkpoint was written by a run with other data or options; resume needs the same ones',
        options.checkpoint,
      );
    checkResumable(saved, state, options.epochs, stepsPerEpoch, options.checkpoint);
    // The same check as the model's preflight, on the statistics the run continues from.
    checkBatchNormVariances(model.graph, options.checkpoint, (name) => saved.tensors.get(name));
    Object.assign(state, saved);
  }
  return { step, state };
}

/**
 * The step's state inputs (parameters, momentum buffers, BN running statistics) from `tensorOf(name)`; a
 * momentum buffer it does not hold starts at zero. Shared by the trainer, the benches and the tests.
 */
export function stateFeeds(
  step: StepGraph,
  tensorOf: (name: string) => Float32Array | undefined,
): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const p of step.params) {
    const value = tensorOf(p.name)!;
    feeds[p.name] = new ort.Tensor('float32', value, p.shape);
    for (const buffer of optimizerBuffers(p))
      feeds[buffer.input] = new ort.Tensor(
        'float32',
        tensorOf(buffer.input) ?? new Float32Array(value.length),
        p.shape,
      );
  }
  for (const r of step.runningStats) feeds[r.name] = new ort.Tensor('float32', tensorOf(r.name)!, r.shape);
  return feeds;
}

/** A parameter's optimizer state: the momentum (AdamW's first moment) and AdamW's second moment. */
function optimizerBuffers(p: TrainedParam): { input: string; output: string }[] {
  return [...(p.momentum ? [p.momentum] : []), ...(p.secondMoment ? [p.secondMoment] : [])];
}

/**
 * The step's learning rate at `stepIndex` (from 0), and AdamW's bias corrections for it (the step graph's scalar
 * inputs). Shared by fine-tuning and distillation.
 */
export function stepScalars(step: StepGraph, lr: number, stepIndex: number): Record<string, ort.Tensor> {
  const scalar = (x: number): ort.Tensor => new ort.Tensor('float32', new Float32Array([x]), []);
  const feeds: Record<string, ort.Tensor> = { [step.inputs.lr]: scalar(lr) };
  if (step.inputs.adam) {
    const c = adamCorrections(step.inputs.adam.beta1, stepIndex + 1);
    feeds[step.inputs.adam.m] = scalar(c.m);
    feeds[step.inputs.adam.v] = scalar(c.v);
  }
  return feeds;
}

/** Output -> input pairs fed back after every step: updated parameters, momentum, running statistics. */
export function carriedTensors(step: StepGraph): (readonly [string, string])[] {
  return [
    ...step.params.map((p) => [p.updated, p.name] as const),
    ...step.params.flatMap((p) => optimizerBuffers(p).map((b) => [b.output, b.input] as const)),
    ...step.runningStats.map((r) => [r.updated, r.name] as const),
  ];
}

function samFeeds(step: StepGraph, rho: number): NonNullable<TrainingRun['sam']> {
  const zeroShifts: Record<string, ort.Tensor> = {};
  for (const p of step.params)
    zeroShifts[p.shift!.input] = new ort.Tensor(
      'float32',
      new Float32Array(p.shape.reduce((a, b) => a * b, 1)),
      p.shape,
    );
  return { rho: new ort.Tensor('float32', new Float32Array([rho]), []), zeroShifts };
}

/**
 * One optimizer step; feeds the carried state back. With SAM, two passes: at w (shift 0), which moves the BN
 * running statistics and gives the shift rho g/|g|, then at the shifted point, which gives the update of w and
 * the momentum. The outputs returned hold the loss and correct count at w, as the plain step reports them.
 */
async function runStep(run: TrainingRun): Promise<ort.InferenceSession.OnnxValueMapType> {
  const { session, feeds, step, sam } = run;
  if (!sam) {
    const out = await session.session.run(feeds);
    for (const [from, to] of run.carried) feeds[to] = out[from] as ort.Tensor;
    return out;
  }
  Object.assign(feeds, sam.zeroShifts, { [step.inputs.rho!]: sam.rho });
  const atW = await session.session.run(feeds);
  for (const r of step.runningStats) feeds[r.name] = atW[r.updated] as ort.Tensor;
  for (const p of step.params) feeds[p.shift!.input] = atW[p.shift!.output] as ort.Tensor;
  const shifted = await session.session.run(feeds);
  for (const p of step.params) {
    feeds[p.name] = shifted[p.updated] as ort.Tensor;
    for (const b of optimizerBuffers(p)) feeds[b.input] = shifted[b.output] as ort.Tensor;
  }
  return atW;
}

/** One epoch of steps over a seeded shuffle; stops with a UserError on a non-finite loss. */
async function trainEpoch(run: TrainingRun, epoch: number): Promise<EpochRecord> {
  const { options, step, state, feeds, teacher, stepsPerEpoch, model } = run;
  const B = options.batchSize;
  const seed = options.seed ?? 0;
  const totalSteps = stepsPerEpoch * options.epochs;
  const order = shuffle(Int32Array.from(run.indices), mulberry32(mixSeed(seed, epoch, 0x5eed)));
  const started = performance.now();
  let lossSum = 0;
  let correct = 0;
  let seen = 0;
  let lr = options.lr;
  let k = 0;
  let mark = performance.now();
  for await (const batch of batches(run.dataset, {
    spec: { ...options.spec, augment: augmentationAt(options.spec, options.augment ?? 'full') },
    batchSize: B,
    indices: order.subarray(0, stepsPerEpoch * B),
    augmentSeed: mixSeed(seed, 0xa06),
    epoch,
  })) {
    lr = learningRate(options.lr, state.step, totalSteps, run.schedule);
    feeds[step.inputs.images] = new ort.Tensor('float32', batch.images, [B, ...step.imageShape.slice(1)]);
    feeds[step.inputs.labels] = new ort.Tensor(
      'int64',
      BigInt64Array.from(batch.labels, (l) => BigInt(l)),
      [B],
    );
    Object.assign(feeds, stepScalars(step, lr, state.step));
    if (teacher)
      feeds[step.inputs.teacherLogits!] = new ort.Tensor(
        'float32',
        await teacher.run(batch.images, batch.shape),
        [B, step.numClasses],
      );
    const before = performance.now();
    run.overheadMs += before - mark;
    const out = await runStep(run);
    mark = performance.now();
    const loss = (out[step.outputs.loss]!.data as Float32Array)[0]!;
    if (!Number.isFinite(loss))
      throw new UserError(
        `training diverged: the loss is ${loss} at epoch ${epoch + 1}, step ${k + 1} (try a lower --lr); nothing was written`,
        model.sourcePath,
      );
    lossSum += loss * B;
    correct += Number((out[step.outputs.correct]!.data as BigInt64Array)[0]!);
    seen += B;
    state.step++;
    run.stepsRun++;
    k++;
    options.onStep?.({
      epoch: epoch + 1,
      epochs: options.epochs,
      step: k,
      stepsPerEpoch,
      loss: lossSum / seen,
      accuracy: correct / seen,
      imagesPerSecond: (seen * 1000) / (performance.now() - started),
    });
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    epoch: epoch + 1,
    loss: lossSum / seen,
    trainAccuracy: correct / seen,
    lr,
    seconds,
    imagesPerSecond: seen / seconds,
  };
}

/** Keeps the epoch's weights (refusing non-finite ones), validates, tracks the best epoch, checkpoints. */
async function finishEpoch(run: TrainingRun, epoch: number, record: EpochRecord): Promise<void> {
  const { options, step, state, feeds, model } = run;
  for (const [, to] of run.carried) {
    const data = feeds[to]!.data as Float32Array;
    if (!data.every(Number.isFinite))
      throw new UserError(
        `training diverged: '${to}' holds non-finite values after epoch ${epoch + 1} (try a lower --lr); nothing was written`,
        model.sourcePath,
      );
    state.tensors.set(to, data);
  }
  if (options.val) {
    const bytes = serializeModel(withWeights(model, step, state.tensors, ''));
    const result = await evaluate(bytes, options.val, {
      spec: options.spec,
      runtime: { device: options.device, threads: options.threads },
      ...(options.valIndices && { indices: options.valIndices }),
    });
    record.valAccuracy = result.top1;
  }
  const score = record.valAccuracy ?? -epoch; // without validation the last epoch is kept
  if (!state.best || score > state.best.accuracy || record.valAccuracy === undefined) {
    state.best = { epoch: epoch + 1, accuracy: score };
    for (const name of weightNames(step)) state.tensors.set(`best:${name}`, state.tensors.get(name)!.slice());
  }
  state.history.push(record);
  state.epoch = epoch + 1;
  if (options.checkpoint) writeCheckpoint(options.checkpoint, state);
  options.onEpoch?.(record);
}

function checkResumable(
  saved: TrainingState,
  fresh: TrainingState,
  epochs: number,
  stepsPerEpoch: number,
  file: string,
): void {
  if (saved.epoch > epochs || saved.step !== saved.epoch * stepsPerEpoch)
    throw new UserError(
      `the checkpoint says epoch ${saved.epoch}, step ${saved.step}, which does not fit a run of ${epochs} epochs of ${stepsPerEpoch} steps`,
      file,
    );
  for (const [name, t] of fresh.tensors) {
    const s = saved.tensors.get(name);
    if (!s || s.length !== t.length)
      throw new UserError(`the checkpoint lacks tensor '${name}' (or has it at another size)`, file);
  }
  for (const name of saved.tensors.keys()) {
    const base = name.startsWith('best:') ? name.slice(5) : name;
    if (!fresh.tensors.has(base) || saved.tensors.get(name)!.length !== fresh.tensors.get(base)!.length)
      throw new UserError(`the checkpoint holds tensor '${name}', which this model does not have`, file);
  }
}

function weightNames(step: StepGraph): string[] {
  return [...step.params.map((p) => p.name), ...step.runningStats.map((r) => r.name)];
}

/** A copy of every tensor the step trains or updates (parameters, BN running statistics), from the model. */
export function startingTensors(model: Model, step: StepGraph): Map<string, Float32Array> {
  const init = new Map(model.graph.initializers.map((v) => [v.name, v.initializer!]));
  const tensors = new Map<string, Float32Array>();
  for (const name of weightNames(step))
    tensors.set(name, Float32Array.from(init.get(name)!.data as Float32Array));
  return tensors;
}

function initialState(model: Model, step: StepGraph, fingerprint: string): TrainingState {
  const tensors = startingTensors(model, step);
  for (const p of step.params)
    for (const b of optimizerBuffers(p))
      tensors.set(b.input, new Float32Array(p.shape.reduce((a, b) => a * b, 1)));
  // The starting weights, hashed: a checkpoint resumes only the model it was started from.
  const hash = createHash('sha256');
  for (const name of weightNames(step)) {
    const t = tensors.get(name)!;
    hash.update(name).update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
  }
  const modelHash = hash.digest('hex').slice(0, 32);
  return { epoch: 0, step: 0, fingerprint, modelHash, history: [], best: undefined, tensors };
}

/** A copy of the inference model whose trained initializers hold `tensors` (names prefixed by `prefix`). */
export function withWeights(
  model: Model,
  step: StepGraph,
  tensors: Map<string, Float32Array>,
  prefix: string,
): Model {
  const copy = model.clone();
  copy.sourcePath = undefined;
  const byName = new Map(copy.graph.initializers.map((v) => [v.name, v.initializer!]));
  for (const name of weightNames(step)) byName.get(name)!.setData(tensors.get(prefix + name)!.slice());
  return copy;
}

function checkLabels(
  dataset: Dataset,
  indices: ArrayLike<number>,
  classes: number,
  modelFile: string | undefined,
): void {
  for (let k = 0; k < indices.length; k++) {
    const label = dataset.labels[indices[k]!]!;
    if (label < 0 || label >= classes)
      throw new UserError(
        `label ${label} of ${dataset.describe(indices[k]!)} is out of range: the model has ${classes} classes`,
        modelFile,
      );
  }
}

/**
 * The teacher options with their defaults filled in, in one place for the step graph and the checkpoint
 * fingerprint. The library's gate default stays `none` (the CLIs pass theirs explicitly); the key order is part of
 * the fingerprint.
 */
function distillationOf(teacher: NonNullable<FinetuneOptions['teacher']>): Distillation {
  return {
    temperature: teacher.temperature ?? DEFAULT_TEMPERATURE,
    alpha: teacher.alpha ?? DEFAULT_ALPHA,
    gate: teacher.gate ?? 'none',
  };
}

function fingerprintOf(step: StepGraph, dataset: Dataset, o: FinetuneOptions, count: number): string {
  const facts = {
    params: step.params.map((p) => [p.name, p.shape]),
    // Resolved: the same data spelled relative or absolute is the same data.
    data: [path.resolve(dataset.path), dataset.length, count],
    o: [
      o.epochs,
      o.batchSize,
      o.lr,
      o.seed ?? 0,
      o.limit,
      o.augment,
      o.sgd,
      o.labelSmoothing,
      o.schedule,
      o.warmupEpochs,
      o.spec,
      // Only with a teacher, so that runs without one keep their fingerprints.
      ...(o.teacher ? [Object.values(distillationOf(o.teacher))] : []),
      ...(o.sam ? [{ sam: o.sam }] : []),
    ],
  };
  return createHash('sha256').update(JSON.stringify(facts)).digest('hex').slice(0, 16);
}

export type { ModelSession };
