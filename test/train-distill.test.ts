/**
 * Label-free distillation (src/train/output-matching.ts, src/train/distill.ts): the output-matching step graph
 * computes the loss written out in JS from the student's and the teacher's outputs, its gradients equal central
 * finite differences of that loss, and training a pruned model on images alone brings its outputs closer to
 * the original's.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { batches } from '../src/data/batches.js';
import { openDataset } from '../src/data/open.js';
import { PRESETS, type PreprocessSpec } from '../src/data/preprocess.js';
import {
  DataType,
  Node,
  Tensor,
  Value,
  intAttr,
  serializeModel,
  tensorType,
  type Model,
} from '../src/ir/index.js';
import { cleanupPipeline } from '../src/passes/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import { pruneModel } from '../src/prune/index.js';
import { distillFromOriginal } from '../src/train/distill.js';
import { stateFeeds } from '../src/train/loop.js';
import { DETECT_GAIN, type OutputMatch } from '../src/train/output-matching.js';
import { buildStepGraph } from '../src/train/step-graph.js';
import { fixture } from './helpers.js';
import { load } from './prune-helpers.js';

const B = 4;

/** fmnist_cnn with BN folded (train and eval mode agree), its logits also squashed by a Sigmoid (a score map). */
function twoOutputModel(): Model {
  const model = load(fixture('fmnist_cnn-bnfolded.onnx'));
  const g = model.graph;
  const logits = g.outputs[0]!;
  const scores = new Value(
    'scores',
    tensorType(DataType.FLOAT, logits.shape ? [...logits.shape] : undefined),
  );
  g.addNode(new Node('Sigmoid', [logits], [scores], 'score_sigmoid'));
  g.outputs.push(scores);
  return model;
}

function seededImages(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

/** The model's squared error against the teacher's first output on `indices`, over the teacher's spread. */
async function errorAgainst(
  teacher: Model,
  model: Model,
  data: Awaited<ReturnType<typeof openDataset>>,
  spec: PreprocessSpec,
  indices: Int32Array,
  batchSize: number,
): Promise<number> {
  let err = 0;
  let ref = 0;
  for await (const batch of batches(data, { spec, batchSize, indices })) {
    const [t] = await outputsOf(teacher, batch.images, batch.shape);
    const [s] = await outputsOf(model, batch.images, batch.shape);
    const mean = t!.reduce((a, b) => a + b, 0) / t!.length;
    for (let i = 0; i < t!.length; i++) {
      err += (t![i]! - s![i]!) ** 2;
      ref += (t![i]! - mean) ** 2;
    }
  }
  return err / ref;
}

async function outputsOf(model: Model, images: Float32Array, shape: number[]): Promise<Float32Array[]> {
  const session = await ort.InferenceSession.create(serializeModel(model));
  try {
    const out = await session.run({ [session.inputNames[0]!]: new ort.Tensor('float32', images, shape) });
    return session.outputNames.map((k) => out[k]!.data as Float32Array);
  } finally {
    await session.release();
  }
}

/** The matching loss, written out: weighted squared error over logits [B, 10], BCE over the scores. */
function lossInJs(student: Float32Array[], teacher: Float32Array[], weights: Float32Array): number {
  const [s0, s1] = student as [Float32Array, Float32Array];
  const [t0, t1] = teacher as [Float32Array, Float32Array];
  let mse = 0;
  for (let i = 0; i < s0.length; i++) mse += weights[i % weights.length]! * (s0[i]! - t0[i]!) ** 2;
  let bce = 0;
  for (let i = 0; i < s1.length; i++) {
    const p = Math.min(Math.max(s1[i]!, 1e-6), 1 - 1e-6);
    bce -= t1[i]! * Math.log(p) + (1 - t1[i]!) * Math.log(1 - p);
  }
  return mse / s0.length + bce / s1.length;
}

/**
 * fmnist_cnn's logits [B, 10] made into a detection output [B, 5, 2] (box rows 10 x + 20, pixels of positive
 * size; one class row squashed by a Sigmoid) and a second output, the logits themselves, as class logits.
 */
function detectionModel(): Model {
  const model = load(fixture('fmnist_cnn-bnfolded.onnx'));
  const g = model.graph;
  const logits = g.outputs[0]!;
  const c = (name: string, dims: number[], values: number[]): Value => {
    const v = new Value(name, tensorType(DataType.INT64, dims));
    g.addInitializer(v, Tensor.int64(values));
    return v;
  };
  const f = (name: string, x: number): Value => {
    const v = new Value(name, tensorType(DataType.FLOAT, []));
    g.addInitializer(v, Tensor.scalarFloat(x));
    return v;
  };
  const node = (op: string, inputs: Value[], name: string, dims: number[]): Value => {
    const out = new Value(name, tensorType(DataType.FLOAT, dims));
    g.addNode(new Node(op, inputs, [out], `${name}_node`));
    return out;
  };
  const grid = node('Reshape', [logits, c('shape', [3], [B, 5, 2])], 'grid', [B, 5, 2]);
  const starts = (a: number, b: number, n: string): Value[] => [
    c(`${n}_s`, [1], [a]),
    c(`${n}_e`, [1], [b]),
    c(`${n}_a`, [1], [1]),
  ];
  const boxes = node('Slice', [grid, ...starts(0, 4, 'b')], 'boxes', [B, 4, 2]);
  const scaled = node('Add', [node('Mul', [boxes, f('ten', 10)], 'b10', [B, 4, 2]), f('twenty', 20)], 'px', [
    B,
    4,
    2,
  ]);
  const score = node('Sigmoid', [node('Slice', [grid, ...starts(4, 5, 'c')], 'cls', [B, 1, 2])], 'score', [
    B,
    1,
    2,
  ]);
  const det = new Value('det', tensorType(DataType.FLOAT, [B, 5, 2]));
  const cat = new Node('Concat', [scaled, score], [det], 'det_node');
  cat.attributes.set('axis', intAttr(1));
  g.addNode(cat);
  g.outputs.push(det);
  return model;
}

/** The detect rule written out (output-matching.ts): [B, 5, 2], one class row. */
function detectLossInJs(s: Float32Array, t: Float32Array): number {
  const rows = 5;
  const A = 2;
  const at = (x: Float32Array, b: number, r: number, a: number): number => x[(b * rows + r) * A + a]!;
  let norm = 0;
  let cls = 0;
  let box = 0;
  for (let b = 0; b < B; b++)
    for (let a = 0; a < A; a++) {
      const w = at(t, b, 4, a);
      norm += w;
      const p = Math.min(Math.max(at(s, b, 4, a), 1e-6), 1 - 1e-6);
      cls -= w * Math.log(p) + (1 - w) * Math.log(1 - p);
      for (let r = 0; r < 4; r++) {
        const size = Math.max(at(t, b, 2 + (r % 2), a), 1);
        const ratio = (at(s, b, r, a) - at(t, b, r, a)) / size;
        box += (w * ratio ** 2) / (1 + ratio ** 2);
      }
    }
  return (DETECT_GAIN * (cls + box)) / Math.max(norm, 1);
}

/** KL(softmax(t) || softmax(s)) over axis 1 of [B, 10], the mean over the batch. */
function softmaxLossInJs(s: Float32Array, t: Float32Array): number {
  let kl = 0;
  for (let b = 0; b < B; b++) {
    const row = (x: Float32Array): number[] => {
      const v = Array.from(x.subarray(b * 10, b * 10 + 10));
      const m = Math.max(...v);
      const z = Math.log(v.reduce((a, y) => a + Math.exp(y - m), 0)) + m;
      return v.map((y) => y - z);
    };
    const ls = row(s);
    const lt = row(t);
    for (let c = 0; c < 10; c++) kl += Math.exp(lt[c]!) * (lt[c]! - ls[c]!);
  }
  return kl / B;
}

/**
 * Builds the matching step of `student` against `teacher` and checks its loss against `lossInJs` and the
 * gradient of a few weights of the last Gemm against central differences of that loss.
 */
async function checkStep(
  student: Model,
  teacher: Model,
  matches: OutputMatch[],
  lossInJs: (student: Float32Array[], teacher: Float32Array[]) => number,
): Promise<void> {
  const step = await buildStepGraph(student, {
    batchSize: B,
    matchOutputs: matches,
    exposeGradients: true,
    blockedConvs: false,
  });
  assert.equal(step.inputs.labels, '');
  assert.equal(step.inputs.teacherOutputs?.length, matches.length);
  const shape = step.imageShape;
  const images = seededImages(
    shape.reduce((a, b) => a * b, 1),
    11,
  );
  const target = await outputsOf(teacher, images, shape);
  const init = new Map(student.graph.initializers.map((v) => [v.name, v.initializer!.data as Float32Array]));
  const session = await ort.InferenceSession.create(serializeModel(step.model));
  const feeds = stateFeeds(step, (name) => init.get(name));
  feeds[step.inputs.images] = new ort.Tensor('float32', images, shape);
  feeds[step.inputs.lr] = new ort.Tensor('float32', new Float32Array([0]), []);
  const dims = student.graph.outputs.map((o) => o.shape!.map((d) => (typeof d === 'number' ? d : B)));
  step.inputs.teacherOutputs!.forEach(
    (name, i) => (feeds[name] = new ort.Tensor('float32', target[i]!, dims[i]!)),
  );
  const out = await session.run(feeds);
  await session.release();
  const loss = (out[step.outputs.loss]!.data as Float32Array)[0]!;
  const expected = lossInJs(await outputsOf(student, images, shape), target);
  assert.ok(Math.abs(loss - expected) <= 1e-5 * Math.max(1, expected), `${loss} vs ${expected}`);

  // dLoss/dW of a few weights of the last layer against central differences through the inference model.
  const param = step.params.find((p) => p.grad && p.shape.length === 2)!;
  const grad = out[param.grad!]!.data as Float32Array;
  const base = init.get(param.name)!;
  for (const k of [0, 7, 101]) {
    const at = (delta: number): Promise<number> => {
      const copy = student.clone();
      const v = copy.graph.initializers.find((x) => x.name === param.name)!;
      const data = base.slice();
      data[k]! += delta;
      v.initializer!.setData(data);
      return outputsOf(copy, images, shape).then((o) => lossInJs(o, target));
    };
    const h = 1e-2;
    const numeric = ((await at(h)) - (await at(-h))) / (2 * h);
    assert.ok(
      Math.abs(grad[k]! - numeric) <= 2e-3 * Math.max(1e-3, Math.abs(numeric)) + 1e-6,
      `${k}: ${grad[k]} vs ${numeric}`,
    );
  }
}

/** A teacher that differs from `build()`: every weight of the first conv scaled. */
function perturbed(build: () => Model): Model {
  const teacher = build();
  const w = teacher.graph.initializers.find((v) => v.initializer!.dims.length === 4)!;
  w.initializer!.setData(Float32Array.from(w.initializer!.data as Float32Array, (x) => 1.3 * x));
  return teacher;
}

describe('distillation without labels', () => {
  it('the output-matching step computes the loss written out, and its gradients equal finite differences', async () => {
    const weights = Float32Array.from({ length: 10 }, (_, c) => 0.5 + c / 10);
    await checkStep(
      twoOutputModel(),
      perturbed(twoOutputModel),
      [{ kind: 'mse', weights }, { kind: 'bce' }],
      (s, t) => lossInJs(s, t, weights),
    );
  });

  it('the detect and softmax rules: the loss written out, and gradients equal finite differences', async () => {
    await checkStep(
      detectionModel(),
      perturbed(detectionModel),
      [{ kind: 'softmax' }, { kind: 'detect' }],
      (s, t) => softmaxLossInJs(s[0]!, t[0]!) + detectLossInJs(s[1]!, t[1]!),
    );
  });

  it('a pruned segmenter trained on unlabelled images matches the original more closely', async () => {
    const file = fixture('dense/unet_up.onnx');
    const teacher = load(file);
    const { model: student } = await pruneModel(load(file), { flops: 0.5 });
    const data = await openDataset(fixture('example/fashion-mnist'));
    const spec: PreprocessSpec = {
      channels: 3,
      channelOrder: 'rgb',
      scale: 255,
      mean: [0.5, 0.5, 0.5],
      std: [0.25, 0.25, 0.25],
      resize: 64,
      crop: 64,
    };
    const heldOut = Int32Array.from({ length: 32 }, (_, i) => data.length - 1 - i);
    const error = (m: Model) => errorAgainst(teacher, m, data, spec, heldOut, 16);
    const before = await error(student);
    const result = await distillFromOriginal(student, teacher, data, {
      epochs: 2,
      batchSize: 16,
      lr: 0.05,
      sgd: { momentum: 0.9, nesterov: true },
      spec,
      limit: 512,
    });
    assert.deepEqual(
      result.matches.map((m) => m.kind),
      ['mse'],
    );
    const after = await error(result.model);
    assert.ok(after < 0.9 * before, `normalised error ${before.toFixed(4)} -> ${after.toFixed(4)}`);
  });

  it('a trained ViT with half its MACs, distilled on unlabelled images, matches the original more closely', async () => {
    // fixtures/trained/vit.onnx: torchvision's VisionTransformer trained on Fashion-MNIST (make_trained_vit.py).
    const file = fixture('trained/vit.onnx');
    const teacher = load(file);
    // As prune does: torch's computed view targets become constants, so the heads can shrink.
    const cleaned = load(file);
    cleanupPipeline(new PassManager(), cleaned);
    const { model: student } = await pruneModel(cleaned, {
      flops: 0.5,
      criterion: 'l1',
      widths: 'uniform',
      roundTo: 1,
      validate: false,
    });
    const data = await openDataset(fixture('example/fashion-mnist'));
    // The fmnist preset's normalisation; its augmentation applies only with an augment seed, never here.
    const spec: PreprocessSpec = PRESETS.fmnist;
    const heldOut = Int32Array.from({ length: 256 }, (_, i) => data.length - 1 - i);
    const error = (m: Model) => errorAgainst(teacher, m, data, spec, heldOut, 64);
    const before = await error(student);
    const result = await distillFromOriginal(student, teacher, data, {
      epochs: 1,
      batchSize: 16,
      lr: 0.01,
      sgd: { momentum: 0.9, nesterov: true },
      spec,
      limit: 1024,
    });
    const after = await error(result.model);
    assert.ok(after < 0.75 * before, `normalised error ${before.toFixed(4)} -> ${after.toFixed(4)}`);
  });
});
