import { UserError } from '../errors.js';
import { DataType } from '../ir/data-type.js';
import { Graph, Node, Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { tensorType } from '../ir/types.js';
import { constantOf } from '../ir/constant.js';
import { nchwcBlockSize, useBlockedConvs } from './blocked-conv.js';
import { Emitter } from './emitter.js';
import { emitOutputMatching, type OutputMatch } from './output-matching.js';
import {
  NON_DIFFERENTIABLE,
  PARAM_SLOTS,
  batchNormBackward,
  expandTrainingBatchNorm,
  gradRules,
  type BatchNormSaved,
  type GradContext,
} from './grad-rules/index.js';
import { adamBeta1, addOptimizer, type SgdOptions } from './optimizer.js';
import { upgradeForwardOpset } from './upgrade-opset.js';
import { PassManager, type Pass, type PassResult } from '../passes/pass-manager.js';
import { probeShapes, type ProbeResult } from '../shapes/probe.js';

/**
 * Knowledge distillation. `gate: 'teacher-correct'` applies the distillation term only to the images whose label
 * the teacher predicts (argmax); the others are trained on the labels alone. That keeps a teacher that is wrong on
 * part of the user's data (a domain shift such as JPEG images for a model trained on lossless ones) from pulling
 * the student towards its mistakes there.
 */
export interface Distillation {
  temperature: number;
  alpha: number;
  gate?: DistillGate;
}

/**
 * The `--distill-gate` choices; the CLIs and the prune pipeline default to teacher-correct (docs/history.md,
 * "Third pass").
 */
export const DISTILL_GATES = ['none', 'teacher-correct'] as const;
export type DistillGate = (typeof DISTILL_GATES)[number];
export const DEFAULT_DISTILL_GATE: DistillGate = 'teacher-correct';
/** Hinton et al.'s usual temperature and an even mix of the label and distillation terms. */
export const DEFAULT_TEMPERATURE = 4;
export const DEFAULT_ALPHA = 0.5;

export interface StepGraphOptions {
  /** The step graph has static shapes; every step takes exactly this many images. */
  batchSize: number;
  sgd?: SgdOptions;
  /** Cross-entropy label smoothing epsilon (torch's `label_smoothing`). */
  labelSmoothing?: number;
  /** Adds `alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T))` with the teacher logits as an input. */
  distillation?: Distillation;
  /**
   * Label-free distillation: instead of cross-entropy on labels, every graph output is matched to the original
   * model's (a teacher input per output, output-matching.ts); one rule per output. No labels input.
   */
  matchOutputs?: readonly OutputMatch[];
  /**
   * BatchNormalization keeps its running statistics (inference mode): gamma and beta train, the statistics
   * neither normalise the batch nor move. Distillation from the original uses it, since the original computes
   * with those statistics, and small batches (a static export fixed at batch 1) give no usable batch statistics.
   */
  frozenBatchNorm?: boolean;
  /**
   * Which float initializers are trained. Default: Conv/Gemm/MatMul weights and biases (and the bias Add after a
   * MatMul), BN scales and shifts. When given, it decides for every float initializer a node reads.
   */
  trainable?: (name: string) => boolean;
  /** Also output each parameter's loss gradient as `<param>__grad` (tests, debugging). */
  exposeGradients?: boolean;
  /**
   * Static shapes of the model's inputs, by name, where the model leaves an axis other than the batch symbolic
   * (a text model's sequence length); the batch axis is `batchSize` whatever is given here.
   */
  inputShapes?: Readonly<Record<string, readonly number[]>>;
  /**
   * Accept a model with several inputs (a text model's token ids, token types and mask): the caller feeds every
   * one of `dataInputs`. Off by default, since the training loop and distillation feed images only.
   */
  multipleInputs?: boolean;
  /**
   * Sharpness-aware minimisation (SAM, Foret et al. 2021), run as two passes of this one graph per step. Every
   * parameter w gets an input `<w>__sam_shift` (s) that the forward pass adds to it: the loss and gradients are
   * taken at w + s, while weight decay and the update apply to w. The graph also outputs the next shift,
   * rho * g / |g| from this pass's gradients g (|g| over all parameters together), with rho an input. The trainer
   * runs it with s = 0 (keeping the running statistics and the shift), then with that shift (keeping the
   * updated parameters and momentum).
   */
  sharpnessAware?: boolean;
  /**
   * Run convolutions through onnxruntime's CPU blocked-layout kernels (blocked-conv.ts). Default true; off for
   * other execution providers, which do not have those ops.
   */
  blockedConvs?: boolean;
}

export interface TrainedParam {
  name: string;
  shape: number[];
  weightDecay: number;
  /** Graph output holding the updated value. */
  updated: string;
  /** Graph output holding dLoss/dParam (only with `exposeGradients`). */
  grad?: string;
  /** Momentum buffer input/output names (absent when momentum is 0); AdamW's first moment. */
  momentum?: { input: string; output: string };
  /** AdamW's second-moment buffer input/output names. */
  secondMoment?: { input: string; output: string };
  /** With `sharpnessAware`: the shift input added to the parameter, and the next shift output. */
  shift?: { input: string; output: string };
}

export interface StepGraph {
  model: Model;
  batchSize: number;
  numClasses: number;
  /**
   * Input names: images [B,...], labels int64 [B], lr float scalar, teacher logits [B,K] with distillation, the
   * SAM radius (float scalar) with `sharpnessAware`.
   */
  inputs: {
    images: string;
    /** Empty with `matchOutputs`, which takes no labels. */
    labels: string;
    lr: string;
    teacherLogits?: string;
    /** With `matchOutputs`: the original's value of each output, in output order. */
    teacherOutputs?: string[];
    rho?: string;
    /**
     * With AdamW: the bias corrections 1 / (1 - beta^t), float scalars fed every step (adamCorrections), and
     * the beta1 the graph was built with.
     */
    adam?: { m: string; v: string; beta1: number };
  };
  imageShape: number[];
  /**
   * Every input of the model, in order, with its static shape and element type: the first is `images`; a text
   * model's token ids, token types and attention mask are int64.
   */
  dataInputs: { name: string; shape: number[]; dataType: DataType }[];
  /** Output names: loss (float scalar, the mean over the batch) and correct (int64 scalar; empty with `matchOutputs`). */
  outputs: { loss: string; correct: string };
  params: TrainedParam[];
  /** BatchNormalization running statistics: the input (the initializer's name) and its updated output. */
  runningStats: { name: string; updated: string; shape: number[] }[];
}

/**
 * onnxruntime session options for running a step graph. Its memory pattern (on by default) plans one block of
 * the first run's peak at the second run, while the arena keeps the first run's chunks, so a step graph held
 * both: ResNet-56 at batch 128 peaked at 1386 MiB with it and 809 MiB without, and the second run took as long
 * as the first (faulting the block in). Without it every tensor comes from the arena; the steady-state CPU
 * time per step did not change measurably (1524-1609 vs 1567-1716 ms).
 */
export const STEP_SESSION_OPTIONS = { enableMemPattern: false } as const;

/** The state the stages of the builder share. */
interface StepBuilder {
  model: Model;
  g: Graph;
  file: string | undefined;
  opset: number;
  batch: number;
  shapes: Map<Value, number[]>;
  probe: ProbeResult;
}

/**
 * The autodiff pass: from an inference model, builds one training step as an ordinary ONNX graph that
 * onnxruntime runs as an inference session. Forward in training mode (BatchNormalization on batch statistics),
 * softmax cross-entropy, reverse-mode gradients from per-op rules made of standard ops, and the SGD update.
 * Constant subgraphs (nothing trainable upstream) are left as they are and never differentiated. The source
 * model is not changed: the step graph is built on a clone.
 */
export async function buildStepGraph(
  source: Model,
  options: StepGraphOptions,
  passManager: PassManager = new PassManager(),
): Promise<StepGraph> {
  const B = options.batchSize;
  if (!Number.isInteger(B) || B < 1) throw new UserError(`batch size must be a positive integer (got ${B})`);
  const model = source.clone();
  const inputs = modelInputs(model, options.multipleInputs ?? false);
  // Static shapes at the step's batch size, onnxruntime only when the analysis cannot pin a value down.
  const probe = await probeShapes(
    model,
    new Map(inputs.map((v) => [v.name, inputShapeAt(v, B, options.inputShapes, model.sourcePath)])),
  );
  const { step, shapes } = passManager.run(trainingStepPass, model, { options, probe });
  if (options.blockedConvs ?? true)
    useBlockedConvs(step.model, (v) => shapes.get(v) ?? staticShape(v), await nchwcBlockSize());
  return step;
}

/** The autodiff pass proper; `probe` holds the static shapes of `model` (which it rewrites) at the batch size. */
export const trainingStepPass: Pass<
  { options: StepGraphOptions; probe: ProbeResult },
  PassResult & { model: Model; step: StepGraph; shapes: ReadonlyMap<Value, number[]> }
> = {
  name: 'training-step',
  description:
    'the inference graph becomes one training step: train-mode forward, loss, gradients, SGD update',
  reads: ['the whole graph', 'static shapes at the batch size'],
  changes: ['the whole graph: inputs, outputs, nodes, initializers promoted to inputs'],
  run(model, { options, probe }) {
    const { step, shapes } = emitTrainingStep(model, probe, options);
    return { modified: true, model, step, shapes };
  },
};

/** The model's real inputs (not initializers); the first is the images (or a text model's token ids). */
function modelInputs(model: Model, multiple: boolean): Value[] {
  const realInputs = model.graph.inputs.filter((v) => !v.initializer);
  if (realInputs.length < 1 || (!multiple && realInputs.length !== 1))
    throw new UserError(
      `fine-tuning needs a model with one input (found ${realInputs.length})`,
      model.sourcePath,
    );
  return realInputs;
}

/** An input's static shape at the batch size: its declared dims, or `inputShapes`' where it gives one. */
function inputShapeAt(
  input: Value,
  batch: number,
  given: StepGraphOptions['inputShapes'],
  file: string | undefined,
): number[] {
  const dims = given?.[input.name] ?? input.shape ?? [];
  return dims.map((d, i) => {
    if (i === 0) return batch;
    if (typeof d !== 'number')
      throw new UserError(
        `input '${input.name}' has a symbolic axis ${i} ('${d}'): give its size with --input-shape`,
        file,
      );
    return d;
  });
}

function emitTrainingStep(
  model: Model,
  probe: ProbeResult,
  options: StepGraphOptions,
): { step: StepGraph; shapes: ReadonlyMap<Value, number[]> } {
  const B = options.batchSize;
  const file = model.sourcePath;
  const g = model.graph;
  if (g.outputs.length < 1) throw new UserError('the model has no output', file);
  const inputs = modelInputs(model, options.multipleInputs ?? false);
  const dataInputs = inputs.map((v) => ({
    name: v.name,
    shape: inputShapeAt(v, B, options.inputShapes, file),
    dataType: v.type?.kind === 'tensor' ? v.type.elemType : DataType.FLOAT,
  }));
  const images = inputs[0]!;
  const imageShape = dataInputs[0]!.shape;
  // The step graph needs opset 17 at least (ReduceSum with axes as an input, LogSoftmax over axis 1).
  const s: StepBuilder = {
    model,
    g,
    file,
    opset: Math.max(model.opset, 17),
    batch: B,
    shapes: new Map(probe.dims),
    probe,
  };
  upgradeForwardOpset(g, model.opset, s.shapes);
  const matching = options.matchOutputs;
  // A classifier exported with a final Softmax (paddle2onnx and others) outputs probabilities: the loss is taken on
  // the Softmax's input, the logits, since cross-entropy on probabilities would apply a second softmax and flatten
  // the gradients. The Softmax stays in the model; the step graph just does not read its output.
  const logits = matching ? g.outputs[0]! : logitsBeforeSoftmax(s, g.outputs[0]!);
  const numClasses = matching ? 0 : classCount(s, logits);

  const params = options.trainable ? chosenParams(g, options.trainable) : defaultParams(g);
  if (params.length === 0)
    throw new UserError(
      'the model has no trainable parameters (no Conv/Gemm/MatMul weights or BatchNormalization scales among its initializers)',
      file,
    );
  for (const p of params) promoteToInput(g, p);
  // Without SAM the forward pass reads each parameter itself; with it, parameter + shift.
  const { readAs, shifts } = options.sharpnessAware
    ? shiftedParams(s, params)
    : { readAs: new Map(params.map((p) => [p, p])), shifts: [] };
  const { composite, runningStats } = options.frozenBatchNorm
    ? { composite: new Map<Node, BatchNormSaved>(), runningStats: freezeBatchNorms(s) }
    : expandBatchNorms(s);
  const requiresGrad = differentiable(s, [...readAs.values()], matching ? [...g.outputs] : [logits]);

  const forwardNodes = [...g.nodes];
  const labels = matching ? undefined : new Value('labels', tensorType(DataType.INT64, [B]));
  const head: LossHead = matching
    ? emitOutputMatching(
        new Emitter(g, 'loss/', { opset: s.opset }),
        [...g.outputs],
        (v) => s.shapes.get(v),
        matching,
        file,
      )
    : emitLoss(s, logits, labels!, numClasses, options);
  const grads = backward(s, forwardNodes, composite, requiresGrad, head.seeds);
  const lr = new Value('lr', tensorType(DataType.FLOAT, []));
  const adam =
    options.sgd?.optimizer === 'adamw'
      ? {
          m: new Value('adam_m_correction', tensorType(DataType.FLOAT, [])),
          v: new Value('adam_v_correction', tensorType(DataType.FLOAT, [])),
        }
      : undefined;
  const { trained, updates, opt } = emitUpdates(s, params, (p) => grads(readAs.get(p)!), lr, options, adam);
  const rho = options.sharpnessAware ? new Value('sam_rho', tensorType(DataType.FLOAT, [])) : undefined;
  const nextShifts = rho ? emitNextShifts(s, updates, rho) : [];

  inputs.forEach((v, i) => (v.type = tensorType(dataInputs[i]!.dataType, dataInputs[i]!.shape)));
  if (labels) g.inputs.push(labels);
  g.inputs.push(lr);
  if (adam) g.inputs.push(adam.m, adam.v);
  if (head.teacherLogits) g.inputs.push(head.teacherLogits);
  if (head.teachers) g.inputs.push(...head.teachers);
  if (rho) g.inputs.push(rho);
  head.loss.name = g.uniqueName('loss');
  if (head.correct) head.correct.name = g.uniqueName('correct');
  g.outputs.length = 0;
  g.outputs.push(
    head.loss,
    ...(head.correct ? [head.correct] : []),
    ...opt.map((u) => u.updated),
    ...opt.flatMap((u) => (u.momentumOut ? [u.momentumOut] : [])),
    ...opt.flatMap((u) => (u.secondOut ? [u.secondOut] : [])),
    ...nextShifts,
  );
  if (rho) trained.forEach((t, i) => (t.shift = { input: shifts[i]!.name, output: nextShifts[i]!.name }));
  const byName = g.valueByName();
  for (const r of runningStats) g.outputs.push(byName.get(r.updated)!);
  if (options.exposeGradients) exposeGradients(s, updates, trained);
  for (const v of g.outputs)
    if (!v.type) v.type = tensorType(v === head.correct ? DataType.INT64 : DataType.FLOAT, undefined);
  g.valueInfo.length = 0;
  setOpset(model, s.opset);
  const step: StepGraph = {
    model,
    batchSize: B,
    numClasses,
    inputs: {
      images: images.name,
      labels: labels?.name ?? '',
      lr: lr.name,
      teacherLogits: head.teacherLogits?.name,
      ...(head.teachers && { teacherOutputs: head.teachers.map((t) => t.name) }),
      rho: rho?.name,
      ...(adam && { adam: { m: adam.m.name, v: adam.v.name, beta1: adamBeta1(options.sgd!) } }),
    },
    imageShape,
    dataInputs,
    outputs: { loss: head.loss.name, correct: head.correct?.name ?? '' },
    params: trained,
    runningStats,
  };
  return { step, shapes: s.shapes };
}

/** A trained tensor (parameter, running statistic) becomes a graph input fed by the training loop. */
function promoteToInput(g: Graph, v: Value): void {
  const t = v.initializer!;
  g.removeInitializer(v);
  v.type = tensorType(t.dataType, [...t.dims]);
  g.inputs.push(v);
}

/**
 * SAM's perturbation: each parameter p gets a shift input s, and every node that read p reads p + s instead. The
 * gradient is taken with respect to p + s; the optimizer still updates p.
 */
function shiftedParams(s: StepBuilder, params: Value[]): { readAs: Map<Value, Value>; shifts: Value[] } {
  const { g } = s;
  const e = new Emitter(g, 'sam/', { opset: s.opset, before: g.nodes[0] });
  const readAs = new Map<Value, Value>();
  const shifts: Value[] = [];
  for (const p of params) {
    const shape = [...(p.shape as number[])];
    const shift = new Value(g.uniqueName(`${p.name}__sam_shift`), tensorType(DataType.FLOAT, shape));
    g.inputs.push(shift);
    const readers = [...p.uses];
    const shifted = e.add(p, shift);
    for (const use of readers) use.node.setInput(use.index, shifted);
    shifted.type = tensorType(DataType.FLOAT, shape);
    s.shapes.set(shifted, shape);
    readAs.set(p, shifted);
    shifts.push(shift);
  }
  return { readAs, shifts };
}

/** SAM's next shift for every parameter: rho * g / |g|, with |g| the norm of all the loss gradients together. */
function emitNextShifts(s: StepBuilder, updates: { param: Value; grad: Value }[], rho: Value): Value[] {
  const e = new Emitter(s.g, 'sam/', { opset: s.opset });
  const squares = updates.map((u) => e.op('ReduceSumSquare', [u.grad], { keepdims: 0 }));
  // The epsilon keeps a zero gradient (nothing to perturb towards) from dividing by zero.
  const norm = e.add(e.op('Sqrt', [e.sum(squares)]), e.scalar(1e-12));
  const scale = e.op('Div', [rho, norm]);
  return updates.map((u) => {
    const next = e.mul(u.grad, scale);
    next.name = s.g.uniqueName(`${u.param.name}__sam_shift__new`);
    next.type = tensorType(DataType.FLOAT, [...(u.param.shape as number[])]);
    return next;
  });
}

/** Every BatchNormalization in training mode; its running statistics become inputs and updated outputs. */
function expandBatchNorms(s: StepBuilder): {
  composite: Map<Node, BatchNormSaved>;
  runningStats: StepGraph['runningStats'];
} {
  const { g } = s;
  const composite = new Map<Node, BatchNormSaved>();
  const runningStats: StepGraph['runningStats'] = [];
  for (const bn of [...g.iterNodes()].filter((n) => n.opType === 'BatchNormalization')) {
    const [mean, variance] = [bn.input(3), bn.input(4)];
    const xShape = s.shapes.get(bn.input(0))!;
    const { y, saved, newMean, newVar } = expandTrainingBatchNorm(g, bn, xShape, s.opset);
    composite.set(y.producer!, saved);
    s.shapes.set(y, xShape);
    for (const [stat, updated] of [
      [mean, newMean],
      [variance, newVar],
    ] as const) {
      if (stat.initializer) promoteToInput(g, stat);
      updated.name = g.uniqueName(`${stat.name}__new`);
      runningStats.push({ name: stat.name, updated: updated.name, shape: [xShape[1]!] });
    }
  }
  return { composite, runningStats };
}

/**
 * Every BatchNormalization as the affine map it computes in inference mode, y = x * k + (beta - mean * k) with
 * k = gamma / sqrt(var + eps), written with ops that have backward rules; the statistics stay constants.
 */
function freezeBatchNorms(s: StepBuilder): StepGraph['runningStats'] {
  const { g } = s;
  for (const bn of [...g.iterNodes()].filter((n) => n.opType === 'BatchNormalization')) {
    const [x, gamma, beta, mean, variance] = [0, 1, 2, 3, 4].map((i) => bn.input(i)) as Value[];
    const xShape = s.shapes.get(x)!;
    const c = xShape[1]!;
    const e = new Emitter(g, 'bn_eval/', { opset: s.opset, before: bn });
    const eps = bn.attrFloat('epsilon', 1e-5);
    const channelShape = xShape.map((d, i) => (i === 1 ? d : 1));
    const shaped = (v: Value, shape: number[]): Value => (s.shapes.set(v, shape), v);
    const std = shaped(e.op('Sqrt', [shaped(e.add(variance, e.scalar(eps)), [c])]), [c]);
    const k = shaped(e.op('Div', [gamma, std]), [c]);
    const shift = shaped(e.sub(beta, shaped(e.mul(mean, k), [c])), [c]);
    const scaled = shaped(e.mul(x, shaped(e.reshape(k, channelShape), channelShape)), xShape);
    const y = shaped(e.add(scaled, shaped(e.reshape(shift, channelShape), channelShape)), xShape);
    g.replaceAllUsesWith(bn.output(), y);
    g.removeNode(bn);
  }
  return [];
}

/** Which values depend on a trainable parameter (float outputs of differentiable ops downstream of one). */
function differentiable(s: StepBuilder, params: Value[], outputs: Value[]): Set<Value> {
  const requiresGrad = new Set<Value>(params);
  for (const n of s.g.nodes) {
    if (NON_DIFFERENTIABLE.has(n.opType) || !n.inputs.some((v) => v && requiresGrad.has(v))) continue;
    n.outputs.forEach((o, i) => {
      const t = s.probe.types.get(o);
      const isFloat = t !== undefined ? t === DataType.FLOAT : !(n.opType === 'MaxPool' && i === 1);
      if (isFloat) requiresGrad.add(o);
    });
  }
  const cut = outputs.find((o) => !requiresGrad.has(o));
  if (cut) throw new UserError(`no trainable parameter reaches the output '${cut.name}'`, s.file);
  return requiresGrad;
}

/** The class count of a classifier's logits [N, K]: cross-entropy needs them as the first output. */
function classCount(s: StepBuilder, logits: Value): number {
  const shape = s.shapes.get(logits);
  if (!shape || shape.length !== 2)
    throw new UserError(
      `output '${logits.name}' must be logits [N, classes] (for other outputs, distil from the original without labels)`,
      s.file,
    );
  return shape[1]!;
}

interface LossHead {
  loss: Value;
  correct?: Value;
  /** Where the backward starts: (output, dLoss/dOutput) pairs. */
  seeds: [Value, Value][];
  teacherLogits?: Value;
  /** With output matching: the teacher value of each output, as graph inputs. */
  teachers?: Value[];
}

/**
 * Softmax cross-entropy with label smoothing, q = (1 - eps) onehot + eps / K, optionally mixed with
 * distillation from teacher logits; the gradient of the mean loss with respect to the logits; the correct count.
 */
function emitLoss(
  s: StepBuilder,
  logits: Value,
  labels: Value,
  numClasses: number,
  options: StepGraphOptions,
): LossHead {
  const B = s.batch;
  const eps = options.labelSmoothing ?? 0;
  const le = new Emitter(s.g, 'loss/', { opset: s.opset });
  const logp = le.op('LogSoftmax', [logits], { axis: 1 });
  const target = le.op(
    'OneHot',
    [
      labels,
      le.ints([numClasses]),
      le.floats(new Float32Array([eps / numClasses, 1 - eps + eps / numClasses]), [2]),
    ],
    { axis: -1 },
  );
  let loss = le.scale(le.op('ReduceSum', [le.mul(target, logp)], { keepdims: 0 }), -1 / B);
  let dLogits = le.scale(le.sub(le.op('Exp', [logp]), target), 1 / B);
  let teacherLogits: Value | undefined;
  if (options.distillation) {
    teacherLogits = new Value('teacher_logits', tensorType(DataType.FLOAT, [B, numClasses]));
    const teacherScores =
      logits === s.g.outputs[0] ? teacherLogits : probabilitiesAsLogits(le, teacherLogits);
    // Per-image cross-entropy, [B, 1], for the gated mix.
    const ce = (): Value =>
      le.scale(le.op('ReduceSum', [le.mul(target, logp), le.ints([1])], { keepdims: 1 }), -1);
    ({ loss, dLogits } = withDistillation(
      le,
      { loss, dLogits, ce, logits, teacherLogits: teacherScores, labels },
      options.distillation,
      B,
    ));
  }
  const predicted = le.op('ArgMax', [logits], { axis: 1, keepdims: 0 });
  const correct = le.op(
    'ReduceSum',
    [le.op('Cast', [le.op('Equal', [predicted, labels])], { to: DataType.INT64 })],
    { keepdims: 0 },
  );
  return { loss, correct, seeds: [[logits, dLogits]], ...(teacherLogits && { teacherLogits }) };
}

/** The input of a final Softmax over the class axis of a [N, K] output; else the output itself. */
function logitsBeforeSoftmax(s: StepBuilder, output: Value): Value {
  const node = output.producer;
  if (node?.opType !== 'Softmax' || node.domain !== '' || s.shapes.get(output)?.length !== 2) return output;
  const axis = node.attrInt('axis', s.model.opset >= 13 ? -1 : 1);
  const input = node.inputs[0];
  return (axis === 1 || axis === -1) && input && s.shapes.get(input)?.length === 2 ? input : output;
}

/**
 * The teacher's output as logits where it is probabilities (every value >= 0, rows summing to 1 within 1e-3: a
 * teacher with a final Softmax, as the student had): log(p), whose softmax at any temperature is the teacher's
 * softmax(z / T). Logits pass unchanged, so a teacher with either head works.
 */
function probabilitiesAsLogits(le: Emitter, teacher: Value): Value {
  const rowSums = le.op('ReduceSum', [teacher, le.ints([1])], { keepdims: 0 });
  const worstRow = le.op('ReduceMax', [le.op('Abs', [le.sub(rowSums, le.scalar(1))])], { keepdims: 0 });
  const isProbability = le.op('And', [
    le.op('GreaterOrEqual', [le.op('ReduceMin', [teacher], { keepdims: 0 }), le.scalar(0)]),
    le.op('Less', [worstRow, le.scalar(1e-3)]),
  ]);
  const logs = le.op('Log', [le.op('Max', [teacher, le.scalar(1e-30)])]);
  return le.op('Where', [isProbability, logs, teacher]);
}

/**
 * Mixes the cross-entropy (given as its batch mean and its logit gradient) with `alpha T^2 KL(pt || ps)`. Per image
 * the weights are (1 - alpha g) and alpha g, where g is 1, or with the teacher-correct gate whether the teacher's
 * argmax is the label.
 */
function withDistillation(
  le: Emitter,
  head: { loss: Value; dLogits: Value; ce: () => Value; logits: Value; teacherLogits: Value; labels: Value },
  { temperature: T, alpha, gate = 'none' }: Distillation,
  B: number,
): { loss: Value; dLogits: Value } {
  const logPt = le.op('LogSoftmax', [le.scale(head.teacherLogits, 1 / T)], { axis: 1 });
  const logPs = le.op('LogSoftmax', [le.scale(head.logits, 1 / T)], { axis: 1 });
  const pt = le.op('Exp', [logPt]);
  // d/ds of alpha T^2 KL / B is alpha T (softmax(s/T) - softmax(t/T)) / B.
  const dKl = le.scale(le.sub(le.op('Exp', [logPs]), pt), (alpha * T) / B);
  if (gate === 'none') {
    const kl = le.scale(
      le.op('ReduceSum', [le.mul(pt, le.sub(logPt, logPs))], { keepdims: 0 }),
      (alpha * T * T) / B,
    );
    return {
      loss: le.add(le.scale(head.loss, 1 - alpha), kl),
      dLogits: le.add(le.scale(head.dLogits, 1 - alpha), dKl),
    };
  }
  const teacherPredicts = le.op('ArgMax', [head.teacherLogits], { axis: 1, keepdims: 0 });
  const g = le.reshape(
    le.op('Cast', [le.op('Equal', [teacherPredicts, head.labels])], { to: DataType.FLOAT }),
    [B, 1],
  );
  const ceWeight = le.sub(le.scalar(1), le.scale(g, alpha));
  const klPerImage = le.op('ReduceSum', [le.mul(pt, le.sub(logPt, logPs)), le.ints([1])], { keepdims: 1 });
  const perImage = le.add(le.mul(ceWeight, head.ce()), le.scale(le.mul(g, klPerImage), alpha * T * T));
  return {
    loss: le.scale(le.op('ReduceSum', [perImage], { keepdims: 0 }), 1 / B),
    dLogits: le.add(le.mul(ceWeight, head.dLogits), le.mul(g, dKl)),
  };
}

/** The reverse sweep: each forward node's rule from the gradient registry; returns the summed gradient of v. */
function backward(
  s: StepBuilder,
  forwardNodes: Node[],
  composite: Map<Node, BatchNormSaved>,
  requiresGrad: Set<Value>,
  seeds: readonly [Value, Value][],
): (v: Value) => Value | undefined {
  const { file } = s;
  const grads = new Map<Value, Value[]>(seeds.map(([v, d]) => [v, [d]]));
  const be = new Emitter(s.g, 'grad/', { opset: s.opset });
  const summed = (v: Value): Value | undefined => {
    const parts = grads.get(v);
    if (!parts) return undefined;
    const sum = be.sum(parts);
    grads.set(v, [sum]);
    return sum;
  };
  const give = (v: Value | undefined, grad: Value | undefined): void => {
    if (!v || !grad || !requiresGrad.has(v)) return;
    const list = grads.get(v) ?? [];
    list.push(grad);
    grads.set(v, list);
  };
  for (const node of [...forwardNodes].reverse()) {
    if (!node.outputs.some((o) => grads.has(o))) continue;
    const saved = composite.get(node);
    if (saved) {
      batchNormBackward(be, saved, summed(node.output())!, requiresGrad).forEach(([v, d]) => give(v, d));
      continue;
    }
    if (!node.inputs.some((v) => v && requiresGrad.has(v))) continue;
    const rule = node.domain === '' || node.domain === 'ai.onnx' ? gradRules[node.opType] : undefined;
    if (!rule)
      throw new UserError(
        `op ${node.opType} has no backward rule, and it lies between the trainable parameters and the loss`,
        file,
        node.name || node.output().name,
      );
    const ctx: GradContext = {
      e: be,
      node,
      dy: (i = 0) => summed(node.output(i)),
      needs: (i) => !!node.inputs[i] && requiresGrad.has(node.inputs[i]!),
      shape: (v) => {
        const shape = s.shapes.get(v);
        if (!shape) throw new UserError(`no static shape known for '${v.name}'`, file, node.name);
        return shape;
      },
      constant: (v) =>
        constantInts(v, s.probe, () =>
          ctx.fail(`input '${v.name}' must be a constant for the backward rule`),
        ),
      fail: (message) => {
        throw new UserError(message, file, node.name || node.output().name);
      },
    };
    rule(ctx).forEach((d, i) => give(node.inputs[i], d));
  }
  return summed;
}

/** The optimizer update of every parameter (momentum and AdamW's buffers become inputs and outputs). */
function emitUpdates(
  s: StepBuilder,
  params: Value[],
  gradOf: (v: Value) => Value | undefined,
  lr: Value,
  options: StepGraphOptions,
  adam: { m: Value; v: Value } | undefined,
): {
  trained: TrainedParam[];
  updates: { param: Value; grad: Value }[];
  opt: ReturnType<typeof addOptimizer>;
} {
  const updates: { param: Value; grad: Value }[] = [];
  for (const p of params) {
    const grad = gradOf(p);
    if (!grad) throw new UserError(`parameter '${p.name}' does not reach the loss`, s.file);
    updates.push({ param: p, grad });
  }
  const opt = addOptimizer(
    new Emitter(s.g, 'sgd/', { opset: s.opset }),
    updates,
    lr,
    options.sgd ?? {},
    adam,
  );
  const trained: TrainedParam[] = [];
  for (const u of opt) {
    if (u.momentumIn) s.g.inputs.push(u.momentumIn);
    if (u.secondIn) s.g.inputs.push(u.secondIn);
    trained.push({
      name: u.param.name,
      shape: [...(u.param.shape as number[])],
      weightDecay: u.weightDecay,
      updated: u.updated.name,
      momentum:
        u.momentumIn && u.momentumOut ? { input: u.momentumIn.name, output: u.momentumOut.name } : undefined,
      ...(u.secondIn &&
        u.secondOut && { secondMoment: { input: u.secondIn.name, output: u.secondOut.name } }),
    });
  }
  return { trained, updates, opt };
}

/** Each parameter's gradient as an output `<param>__grad` (tests, debugging). */
function exposeGradients(
  s: StepBuilder,
  updates: { param: Value; grad: Value }[],
  trained: TrainedParam[],
): void {
  for (const u of updates) {
    // A gradient may be an input itself or shared; route it through Identity to give it its own name.
    const out = new Emitter(s.g, 'expose/', { opset: s.opset }).op('Identity', [u.grad]);
    out.name = s.g.uniqueName(`${u.param.name}__grad`);
    u.grad = out;
    s.g.outputs.push(out);
  }
  trained.forEach((t, i) => (t.grad = updates[i]!.grad.name));
}

/** Every float initializer a node reads, where `trainable(name)` says so. */
function chosenParams(g: Graph, trainable: (name: string) => boolean): Value[] {
  const params = new Set<Value>();
  for (const n of g.nodes)
    for (const v of n.inputs)
      if (v?.initializer?.dataType === DataType.FLOAT && trainable(v.name)) params.add(v);
  return [...params];
}

const isFloatInit = (v: Value | undefined): v is Value => v?.initializer?.dataType === DataType.FLOAT;

/**
 * Float initializers at the weight/bias slots of PARAM_SLOTS, the bias Add after a MatMul, and the transformer
 * parameters that are not an op's weight slot (transformerParams).
 */
function defaultParams(g: Graph): Value[] {
  const params = new Set<Value>();
  for (const n of g.nodes) {
    for (const slot of PARAM_SLOTS[n.opType] ?? [])
      if (isFloatInit(n.inputs[slot])) params.add(n.inputs[slot]!);
    // A MatMul followed by Add(initializer) is torch's Linear without Gemm: the addend is its bias.
    if (n.opType === 'Add' && n.inputs.some((v) => v?.producer?.opType === 'MatMul')) {
      const bias = n.inputs.find(isFloatInit);
      if (bias) params.add(bias);
    }
    for (const v of transformerParams(n)) params.add(v);
  }
  return [...params];
}

/**
 * What torch trains in a transformer that no weight slot names, as its exporter writes it:
 * - LayerNorm decomposed below opset 17: Div(Sub(x, ReduceMean(x)), Sqrt(...)) -> Mul(scale) -> Add(shift);
 * - a learned position embedding, Add(tokens, P) with P [1, T, C] (every dim but the first above 1);
 * - a class token, Expand(T [1, 1, C]) read by a Concat;
 * - a weight read through a Transpose (a Linear exported with do_constant_folding=False).
 */
function transformerParams(n: Node): Value[] {
  const other = (v: Value): Value | undefined => n.inputs.find((u) => u && u !== v);
  const init = n.inputs.find(isFloatInit);
  if (!init) return [];
  if (n.opType === 'Mul' && isLayerNormDiv(other(init)?.producer)) {
    const shift = n
      .output()
      .uses.find((u) => u.node.opType === 'Add')
      ?.node.inputs.find(isFloatInit);
    return shift ? [init, shift] : [init];
  }
  const dims = init.initializer!.dims;
  if (n.opType === 'Add' && dims.length >= 3 && dims[0] === 1 && dims.slice(1).every((d) => d > 1))
    return other(init)?.initializer ? [] : [init];
  if (
    n.opType === 'Expand' &&
    n.inputs[0] === init &&
    n.output().uses.some((u) => u.node.opType === 'Concat')
  )
    return [init];
  // A Linear weight exported without constant folding: MatMul(x, Transpose(W)).
  const atWeightSlot = n.output().uses.some((u) => PARAM_SLOTS[u.node.opType]?.includes(u.index));
  if (n.opType === 'Transpose' && atWeightSlot) return [init];
  return [];
}

/** The normalising Div of a decomposed LayerNorm: (x - ReduceMean(x)) / Sqrt(...). */
function isLayerNormDiv(div: Node | undefined): boolean {
  const sub = div?.opType === 'Div' ? div.inputs[0]?.producer : undefined;
  const mean = sub?.opType === 'Sub' ? sub.inputs[1]?.producer : undefined;
  return mean?.opType === 'ReduceMean' && mean.inputs[0] === sub!.inputs[0];
}

/** The numbers a constant input holds: an initializer or Constant, else what the probe saw (shape arithmetic). */
function constantInts(v: Value, probe: ProbeResult, fail: () => never): number[] {
  const c = constantOf(v);
  if (c) return Array.from(c.data as ArrayLike<number | bigint>, Number);
  const p = probe.ints.get(v);
  if (p) return p;
  return fail();
}

function staticShape(v: Value): number[] | undefined {
  const s = v.shape;
  return s?.every((d): d is number => typeof d === 'number') ? s : undefined;
}

function setOpset(model: Model, version: number): void {
  const entry = model.opsetImports.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  if (entry) entry.version = Math.max(entry.version, version);
  else model.opsetImports.push({ domain: '', version });
  model.irVersion = Math.max(model.irVersion, 8);
}

export type { Graph };
