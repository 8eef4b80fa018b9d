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
import type { PreprocessSpec } from '../src/data/preprocess.js';
import { DataType, Node, Value, serializeModel, tensorType, type Model } from '../src/ir/index.js';
import { pruneModel } from '../src/prune/index.js';
import { distillFromOriginal } from '../src/train/distill.js';
import { stateFeeds } from '../src/train/loop.js';
import type { OutputMatch } from '../src/train/output-matching.js';
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

describe('distillation without labels', () => {
  it('the output-matching step computes the loss written out, and its gradients equal finite differences', async () => {
    const student = twoOutputModel();
    const teacher = twoOutputModel();
    // A teacher that differs: every weight of the first conv scaled.
    const w = teacher.graph.initializers.find((v) => v.initializer!.dims.length === 4)!;
    w.initializer!.setData(Float32Array.from(w.initializer!.data as Float32Array, (x) => 1.3 * x));
    const weights = Float32Array.from({ length: 10 }, (_, c) => 0.5 + c / 10);
    const matches: OutputMatch[] = [{ kind: 'mse', weights }, { kind: 'bce' }];
    const step = await buildStepGraph(student, {
      batchSize: B,
      matchOutputs: matches,
      exposeGradients: true,
      blockedConvs: false,
    });
    assert.equal(step.inputs.labels, '');
    assert.equal(step.inputs.teacherOutputs?.length, 2);
    const shape = step.imageShape;
    const images = seededImages(
      shape.reduce((a, b) => a * b, 1),
      11,
    );
    const target = await outputsOf(teacher, images, shape);
    const init = new Map(
      student.graph.initializers.map((v) => [v.name, v.initializer!.data as Float32Array]),
    );
    const session = await ort.InferenceSession.create(serializeModel(step.model));
    const feeds = stateFeeds(step, (name) => init.get(name));
    feeds[step.inputs.images] = new ort.Tensor('float32', images, shape);
    feeds[step.inputs.lr] = new ort.Tensor('float32', new Float32Array([0]), []);
    step.inputs.teacherOutputs!.forEach(
      (name, i) => (feeds[name] = new ort.Tensor('float32', target[i]!, [B, 10])),
    );
    const out = await session.run(feeds);
    await session.release();
    const loss = (out[step.outputs.loss]!.data as Float32Array)[0]!;
    const expected = lossInJs(await outputsOf(student, images, shape), target, weights);
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
        return outputsOf(copy, images, shape).then((o) => lossInJs(o, target, weights));
      };
      const h = 1e-2;
      const numeric = ((await at(h)) - (await at(-h))) / (2 * h);
      assert.ok(
        Math.abs(grad[k]! - numeric) <= 2e-3 * Math.max(1e-3, Math.abs(numeric)) + 1e-6,
        `${k}: ${grad[k]} vs ${numeric}`,
      );
    }
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
    const error = async (m: Model): Promise<number> => {
      let err = 0;
      let ref = 0;
      for await (const batch of batches(data, { spec, batchSize: 16, indices: heldOut })) {
        const [t] = await outputsOf(teacher, batch.images, batch.shape);
        const [s] = await outputsOf(m, batch.images, batch.shape);
        const mean = t!.reduce((a, b) => a + b, 0) / t!.length;
        for (let i = 0; i < t!.length; i++) {
          err += (t![i]! - s![i]!) ** 2;
          ref += (t![i]! - mean) ** 2;
        }
      }
      return err / ref;
    };
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
});
