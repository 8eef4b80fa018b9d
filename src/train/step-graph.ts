import { UserError } from '../errors.js';
import { DataType } from '../ir/data-type.js';
import { Graph, Node, Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { tensorType } from '../ir/types.js';
import { emitBatchMoments } from './batch-norm.js';
import { Emitter } from './emitter.js';
import { gradRules, type GradContext } from './grad-rules/index.js';
import { addOptimizer, type SgdOptions } from './optimizer.js';
import { probeValues, type ProbedValue } from './probe.js';

export interface StepGraphOptions {
  /** The step graph has static shapes; every step takes exactly this many images. */
  batchSize: number;
  sgd?: SgdOptions;
  /** Cross-entropy label smoothing epsilon (torch's `label_smoothing`). */
  labelSmoothing?: number;
  /** Adds `alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T))` with the teacher logits as an input. */
  distillation?: { temperature: number; alpha: number };
  /**
   * Which float initializers are trained. Default: Conv/Gemm/MatMul weights and biases (and the bias Add after a
   * MatMul), BN scales and shifts. When given, it decides for every float initializer a node reads.
   */
  trainable?: (name: string) => boolean;
  /** Also output each parameter's loss gradient as `<param>__grad` (tests, debugging). */
  exposeGradients?: boolean;
}

export interface TrainedParam {
  name: string;
  shape: number[];
  weightDecay: number;
  /** Graph output holding the updated value. */
  updated: string;
  /** Graph output holding dLoss/dParam (only with `exposeGradients`). */
  grad?: string;
  /** Momentum buffer input/output names (absent when momentum is 0). */
  momentum?: { input: string; output: string };
}

export interface StepGraph {
  model: Model;
  batchSize: number;
  numClasses: number;
  /** Input names: images [B,...], labels int64 [B], lr float scalar, teacher logits [B,K] with distillation. */
  inputs: { images: string; labels: string; lr: string; teacherLogits?: string };
  imageShape: number[];
  /** Output names: loss (float scalar, the mean over the batch) and correct (int64 scalar). */
  outputs: { loss: string; correct: string };
  params: TrainedParam[];
  /** BatchNormalization running statistics: the input (the initializer's name) and its updated output. */
  runningStats: { name: string; updated: string; shape: number[] }[];
}

const NON_DIFFERENTIABLE = new Set([
  'Shape',
  'Size',
  'ArgMax',
  'ArgMin',
  'Equal',
  'Greater',
  'Less',
  'GreaterOrEqual',
  'LessOrEqual',
  'And',
  'Or',
  'Not',
  'NonZero',
  'ConstantOfShape',
  'Constant',
]);

/** Ops whose initializer inputs at these slots are trained by default. */
const PARAM_SLOTS: Record<string, number[]> = {
  Conv: [1, 2],
  ConvTranspose: [1, 2],
  Gemm: [0, 1, 2],
  MatMul: [0, 1],
  BatchNormalization: [1, 2],
  PRelu: [1],
};

interface BatchNormSaved {
  x: Value;
  xhat: Value;
  scaleFactor: Value;
  gamma: Value;
  beta: Value;
  axes: number[];
  count: number;
  channelShape: number[];
}

/**
 * The autodiff pass: from an inference model, builds one training step as an ordinary ONNX graph that
 * onnxruntime runs as an inference session. Forward in training mode (BatchNormalization on batch statistics),
 * softmax cross-entropy, reverse-mode gradients from per-op rules made of standard ops, and the SGD update.
 * Constant subgraphs (nothing trainable upstream) are left as they are and never differentiated.
 */
export async function buildStepGraph(source: Model, options: StepGraphOptions): Promise<StepGraph> {
  const B = options.batchSize;
  if (!Number.isInteger(B) || B < 1) throw new UserError(`batch size must be a positive integer (got ${B})`);
  const file = source.sourcePath;
  const model = source.clone();
  // The step graph needs opset 17 at least (ReduceSum with axes as an input, LogSoftmax over axis 1).
  const opset = Math.max(model.opset, 17);
  const g = model.graph;
  const realInputs = g.inputs.filter((v) => !v.initializer);
  if (realInputs.length !== 1)
    throw new UserError(`fine-tuning needs a model with one input (found ${realInputs.length})`, file);
  if (g.outputs.length < 1) throw new UserError('the model has no output', file);
  const images = realInputs[0]!;
  const logits = g.outputs[0]!;
  const probed = await probeValues(source, B, images.name);

  const shapes = new Map<Value, number[]>();
  const probedOf = new Map<Value, ProbedValue>();
  for (const n of g.nodes)
    for (const o of n.outputs) {
      const p = probed.get(o.name);
      if (p) {
        shapes.set(o, p.shape);
        probedOf.set(o, p);
      }
    }
  for (const v of g.initializers) shapes.set(v, [...v.initializer!.dims]);
  const imageShape = (images.shape ?? []).map((d, i) => (i === 0 ? B : (d as number)));
  shapes.set(images, imageShape);
  const logitsShape = shapes.get(logits);
  if (!logitsShape || logitsShape.length !== 2)
    throw new UserError(`output '${logits.name}' must be logits [N, classes]`, file);
  const numClasses = logitsShape[1]!;

  const params = options.trainable ? chosenParams(g, options.trainable) : defaultParams(g);
  if (params.length === 0)
    throw new UserError(
      'the model has no trainable parameters (no Conv/Gemm/MatMul weights or BatchNormalization scales among its initializers)',
      file,
    );

  const e = new Emitter(g, '', { opset });
  const lr = new Value('lr', tensorType(DataType.FLOAT, []));
  const labels = new Value('labels', tensorType(DataType.INT64, [B]));
  const promoteToInput = (v: Value): void => {
    const t = v.initializer!;
    g.removeInitializer(v);
    v.type = tensorType(t.dataType, [...t.dims]);
    g.inputs.push(v);
  };
  for (const p of params) promoteToInput(p);

  // BatchNormalization in training mode, written out in standard ops so the backward rule can reuse xhat.
  const composite = new Map<Node, BatchNormSaved>();
  const runningStats: StepGraph['runningStats'] = [];
  for (const bn of [...g.iterNodes()].filter((n) => n.opType === 'BatchNormalization')) {
    const [x, gamma, beta, mean, variance] = [0, 1, 2, 3, 4].map((i) => bn.input(i));
    const xShape = shapes.get(x!)!;
    const axes = xShape.map((_, i) => i).filter((i) => i !== 1);
    const count = axes.reduce((a, i) => a * xShape[i]!, 1);
    const c = xShape[1]!;
    const channelShape = xShape.map((d, i) => (i === 1 ? d : 1));
    const eps = bn.attrFloat('epsilon', 1e-5);
    const momentum = bn.attrFloat('momentum', 0.9); // ONNX: the weight of the old running statistic
    // Emitted before the BN, where its output is needed, so the order stays topological.
    const b = new Emitter(g, `${bn.name || bn.output().name}/train/`, { opset, before: bn });
    const { mean: mu, centered, biasedVar } = emitBatchMoments(b, x!, axes);
    const invStd = b.op('Reciprocal', [b.op('Sqrt', [b.add(biasedVar, b.scalar(eps))])]);
    const xhat = b.mul(centered, invStd);
    const gammaC = b.reshape(gamma!, channelShape);
    const betaC = b.reshape(beta!, channelShape);
    const y = b.add(b.mul(xhat, gammaC), betaC);
    const scaleFactor = b.mul(gammaC, invStd);
    // torch updates running_var with the unbiased batch variance.
    const unbiased = count > 1 ? count / (count - 1) : 1;
    const newMean = b.add(b.scale(mean!, momentum), b.scale(b.reshape(mu, [c]), 1 - momentum));
    const newVar = b.add(
      b.scale(variance!, momentum),
      b.scale(b.reshape(biasedVar, [c]), (1 - momentum) * unbiased),
    );
    composite.set(y.producer!, {
      x: x!,
      xhat,
      scaleFactor,
      gamma: gamma!,
      beta: beta!,
      axes,
      count,
      channelShape,
    });
    shapes.set(y, xShape);
    g.replaceAllUsesWith(bn.output(), y);
    g.removeNode(bn);
    for (const [stat, updated] of [
      [mean!, newMean],
      [variance!, newVar],
    ] as const) {
      if (stat.initializer) promoteToInput(stat);
      updated.name = g.uniqueName(`${stat.name}__new`);
      runningStats.push({ name: stat.name, updated: updated.name, shape: [c] });
    }
  }

  // Which values depend on a trainable parameter.
  const requiresGrad = new Set<Value>(params);
  for (const n of g.nodes) {
    if (NON_DIFFERENTIABLE.has(n.opType) || !n.inputs.some((v) => v && requiresGrad.has(v))) continue;
    n.outputs.forEach((o, i) => {
      const p = probedOf.get(o);
      const isFloat = p ? p.type === 'float32' : !(n.opType === 'MaxPool' && i === 1);
      if (isFloat) requiresGrad.add(o);
    });
  }
  if (!requiresGrad.has(logits)) throw new UserError('no trainable parameter reaches the output', file);

  // Loss: softmax cross-entropy with label smoothing, q = (1 - eps) onehot + eps / K.
  const forwardNodes = [...g.nodes];
  const eps = options.labelSmoothing ?? 0;
  const le = new Emitter(g, 'loss/', { opset });
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
    const { temperature: T, alpha } = options.distillation;
    teacherLogits = new Value('teacher_logits', tensorType(DataType.FLOAT, [B, numClasses]));
    const logPt = le.op('LogSoftmax', [le.scale(teacherLogits, 1 / T)], { axis: 1 });
    const logPs = le.op('LogSoftmax', [le.scale(logits, 1 / T)], { axis: 1 });
    const pt = le.op('Exp', [logPt]);
    const kl = le.scale(
      le.op('ReduceSum', [le.mul(pt, le.sub(logPt, logPs))], { keepdims: 0 }),
      (alpha * T * T) / B,
    );
    loss = le.add(le.scale(loss, 1 - alpha), kl);
    // d/ds of alpha T^2 KL / B is alpha T (softmax(s/T) - softmax(t/T)) / B.
    const dKl = le.scale(le.sub(le.op('Exp', [logPs]), pt), (alpha * T) / B);
    dLogits = le.add(le.scale(dLogits, 1 - alpha), dKl);
  }
  const predicted = le.op('ArgMax', [logits], { axis: 1, keepdims: 0 });
  const correct = le.op(
    'ReduceSum',
    [le.op('Cast', [le.op('Equal', [predicted, labels])], { to: DataType.INT64 })],
    { keepdims: 0 },
  );

  // Reverse sweep.
  const grads = new Map<Value, Value[]>([[logits, [dLogits]]]);
  const be = new Emitter(g, 'grad/', { opset });
  const summed = (v: Value): Value | undefined => {
    const parts = grads.get(v);
    if (!parts) return undefined;
    const s = be.sum(parts);
    grads.set(v, [s]);
    return s;
  };
  const give = (v: Value | undefined, grad: Value | undefined): void => {
    if (!v || !grad || !requiresGrad.has(v)) return;
    const list = grads.get(v) ?? [];
    list.push(grad);
    grads.set(v, list);
  };
  for (const node of forwardNodes.reverse()) {
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
        const s = shapes.get(v);
        if (!s) throw new UserError(`no static shape known for '${v.name}'`, file, node.name);
        return s;
      },
      constant: (v) =>
        constantOf(v, probedOf, () => ctx.fail(`input '${v.name}' must be a constant for the backward rule`)),
      fail: (message) => {
        throw new UserError(message, file, node.name || node.output().name);
      },
    };
    rule(ctx).forEach((d, i) => give(node.inputs[i], d));
  }

  const trained: TrainedParam[] = [];
  const updates: { param: Value; grad: Value }[] = [];
  for (const p of params) {
    const grad = summed(p);
    if (!grad) throw new UserError(`parameter '${p.name}' does not reach the loss`, file);
    updates.push({ param: p, grad });
  }
  const opt = addOptimizer(new Emitter(g, 'sgd/', { opset }), updates, lr, options.sgd ?? {});
  for (const u of opt) {
    if (u.momentumIn) g.inputs.push(u.momentumIn);
    trained.push({
      name: u.param.name,
      shape: [...(u.param.shape as number[])],
      weightDecay: u.weightDecay,
      updated: u.updated.name,
      momentum:
        u.momentumIn && u.momentumOut ? { input: u.momentumIn.name, output: u.momentumOut.name } : undefined,
    });
  }

  images.type = tensorType(DataType.FLOAT, imageShape);
  g.inputs.push(labels, lr);
  if (teacherLogits) g.inputs.push(teacherLogits);
  loss.name = g.uniqueName('loss');
  correct.name = g.uniqueName('correct');
  g.outputs.length = 0;
  g.outputs.push(
    loss,
    correct,
    ...opt.map((u) => u.updated),
    ...opt.flatMap((u) => (u.momentumOut ? [u.momentumOut] : [])),
  );
  const byName = g.valueByName();
  for (const r of runningStats) g.outputs.push(byName.get(r.updated)!);
  if (options.exposeGradients) {
    for (const u of updates) {
      // A gradient may be an input itself or shared; route it through Identity to give it its own name.
      const out = new Emitter(g, 'expose/', { opset }).op('Identity', [u.grad]);
      out.name = g.uniqueName(`${u.param.name}__grad`);
      u.grad = out;
      g.outputs.push(out);
    }
    trained.forEach((t, i) => (t.grad = updates[i]!.grad.name));
  }
  for (const v of g.outputs)
    if (!v.type) v.type = tensorType(v === correct ? DataType.INT64 : DataType.FLOAT, undefined);
  g.valueInfo.length = 0;
  setOpset(model, opset);
  return {
    model,
    batchSize: B,
    numClasses,
    inputs: { images: images.name, labels: labels.name, lr: lr.name, teacherLogits: teacherLogits?.name },
    imageShape,
    outputs: { loss: loss.name, correct: correct.name },
    params: trained,
    runningStats,
  };
}

/** Every float initializer a node reads, where `trainable(name)` says so. */
function chosenParams(g: Graph, trainable: (name: string) => boolean): Value[] {
  const params = new Set<Value>();
  for (const n of g.nodes)
    for (const v of n.inputs)
      if (v?.initializer?.dataType === DataType.FLOAT && trainable(v.name)) params.add(v);
  return [...params];
}

/** Float initializers at the weight/bias slots of PARAM_SLOTS, and the bias Add after a MatMul. */
function defaultParams(g: Graph): Value[] {
  const params = new Set<Value>();
  const isFloatInit = (v: Value | undefined): v is Value => v?.initializer?.dataType === DataType.FLOAT;
  for (const n of g.nodes) {
    for (const slot of PARAM_SLOTS[n.opType] ?? [])
      if (isFloatInit(n.inputs[slot])) params.add(n.inputs[slot]!);
    // A MatMul followed by Add(initializer) is torch's Linear without Gemm: the addend is its bias.
    if (n.opType === 'Add' && n.inputs.some((v) => v?.producer?.opType === 'MatMul')) {
      const bias = n.inputs.find(isFloatInit);
      if (bias) params.add(bias);
    }
  }
  return [...params];
}

/**
 * dbeta = sum(dy), dgamma = sum(dy * xhat), and with k = gamma / sqrt(var + eps):
 * dx = k * (dy - (dbeta + xhat * dgamma) / n), the batch-statistics gradient torch computes.
 */
function batchNormBackward(
  e: Emitter,
  s: BatchNormSaved,
  dy: Value,
  requiresGrad: Set<Value>,
): [Value, Value][] {
  const out: [Value, Value][] = [];
  const dBetaKeep = e.reduceSum(dy, s.axes, true);
  const dGammaKeep = e.reduceSum(e.mul(dy, s.xhat), s.axes, true);
  const c = s.channelShape[1]!;
  if (requiresGrad.has(s.beta)) out.push([s.beta, e.reshape(dBetaKeep, [c])]);
  if (requiresGrad.has(s.gamma)) out.push([s.gamma, e.reshape(dGammaKeep, [c])]);
  if (requiresGrad.has(s.x)) {
    const correction = e.scale(e.add(dBetaKeep, e.mul(s.xhat, dGammaKeep)), 1 / s.count);
    out.push([s.x, e.mul(s.scaleFactor, e.sub(dy, correction))]);
  }
  return out;
}

function constantOf(v: Value, probed: Map<Value, ProbedValue>, fail: () => never): number[] {
  if (v.initializer) return Array.from(v.initializer.data as ArrayLike<number | bigint>, Number);
  const constant = v.producer?.opType === 'Constant' ? v.producer.attr('value') : undefined;
  if (
    constant &&
    'value' in constant &&
    typeof constant.value === 'object' &&
    constant.value &&
    'data' in constant.value
  )
    return Array.from((constant.value as { data: ArrayLike<number | bigint> }).data, Number);
  const p = probed.get(v)?.data;
  if (p) return p;
  return fail();
}

function setOpset(model: Model, version: number): void {
  const entry = model.opsetImports.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  if (entry) entry.version = Math.max(entry.version, version);
  else model.opsetImports.push({ domain: '', version });
  model.irVersion = Math.max(model.irVersion, 8);
}

export type { Graph };
