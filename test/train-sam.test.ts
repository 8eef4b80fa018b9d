import assert from 'node:assert/strict';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { batches } from '../src/data/batches.js';
import { openDataset } from '../src/data/open.js';
import { resolveSpec } from '../src/data/preprocess.js';
import { balancedSubset } from '../src/data/subset.js';
import { loadModel, serializeModel } from '../src/ir/index.js';
import type { Model } from '../src/ir/model.js';
import { finetune, stateFeeds } from '../src/train/loop.js';
import { buildStepGraph, type StepGraph } from '../src/train/step-graph.js';
import { fixture, seededFloats } from './helpers.js';

const EXAMPLE = fixture('example/fmnist-cnn.onnx');
const B = 16;
const RHO = 0.05;
const LR = 0.1;
const MOMENTUM = 0.9;
const WD = 5e-4;

type Outputs = ort.InferenceSession.OnnxValueMapType;

function initializers(model: Model): Map<string, Float32Array> {
  return new Map(model.graph.initializers.map((v) => [v.name, v.initializer!.data as Float32Array]));
}

function maxRelativeError(ours: Float32Array, ref: Float32Array): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < ref.length; i++) {
    scale = Math.max(scale, Math.abs(ref[i]!));
    diff = Math.max(diff, Math.abs(ours[i]! - ref[i]!));
  }
  return diff / Math.max(scale, 1e-12);
}

/** Runs a step graph once on one batch with the given parameters (stateFeeds: momentum buffers at zero). */
async function runOnce(
  session: ort.InferenceSession,
  step: StepGraph,
  batch: { images: Float32Array; labels: Int32Array },
  params: Map<string, Float32Array>,
  extra: Record<string, ort.Tensor> = {},
): Promise<Outputs> {
  const feeds: Record<string, ort.Tensor> = {
    [step.inputs.images]: new ort.Tensor('float32', batch.images, step.imageShape),
    [step.inputs.labels]: new ort.Tensor('int64', BigInt64Array.from(batch.labels, BigInt), [B]),
    [step.inputs.lr]: new ort.Tensor('float32', new Float32Array([LR]), []),
    ...extra,
  };
  Object.assign(
    feeds,
    stateFeeds(step, (name) => params.get(name)),
  );
  return session.run(feeds);
}

test('a SAM step equals two gradient evaluations: the gradient at w + rho g/|g| updates w', async () => {
  const model = loadModel(EXAMPLE);
  const { spec } = resolveSpec({ modelPath: EXAMPLE });
  const train = await openDataset(fixture('example/fashion-mnist'), { split: 'train' });
  const indices = balancedSubset(train.labels, B, 5);
  const sgd = { momentum: MOMENTUM, nesterov: true, weightDecay: WD };
  // One epoch of one batch: the trainer's single step sees exactly these images (the mean loss, its gradients
  // and BN's batch statistics do not depend on their order).
  const tuned = await finetune(model, train, {
    epochs: 1,
    batchSize: B,
    lr: LR,
    limit: B,
    seed: 5,
    augment: 'none',
    schedule: { kind: 'constant' },
    sgd,
    spec,
    threads: 1,
    sam: RHO,
  });

  const batch = (
    await batches(train, { spec: { ...spec, augment: undefined }, batchSize: B, indices }).next()
  ).value!;
  const step = await buildStepGraph(model, { batchSize: B, sgd, exposeGradients: true });
  const session = await ort.InferenceSession.create(serializeModel(step.model), { intraOpNumThreads: 1 });
  const w = initializers(model);
  const atW = await runOnce(session, step, batch, w);
  const grads = step.params.map((p) => atW[p.grad!]!.data as Float32Array);
  const norm = Math.sqrt(grads.reduce((a, g) => a + g.reduce((s, x) => s + x * x, 0), 0));
  const shifted = new Map(w);
  step.params.forEach((p, i) =>
    shifted.set(
      p.name,
      w.get(p.name)!.map((x, j) => x + (RHO * grads[i]![j]!) / norm),
    ),
  );
  const atShifted = await runOnce(session, step, batch, shifted);
  await session.release();

  const result = initializers(tuned.model);
  let worst = 0;
  let moved = 0;
  for (const p of step.params) {
    const g2 = atShifted[p.grad!]!.data as Float32Array;
    const w0 = w.get(p.name)!;
    // torch's SGD from a zero buffer, Nesterov: d = g + wd w; buf = d; w -= lr (d + momentum buf).
    const expected = w0.map((x, j) => {
      const d = g2[j]! + p.weightDecay * x;
      return x - LR * (d + MOMENTUM * d);
    });
    const plain = atW[p.updated]!.data as Float32Array;
    worst = Math.max(worst, maxRelativeError(result.get(p.name)!, expected));
    moved = Math.max(moved, maxRelativeError(plain, expected));
  }
  for (const r of step.runningStats)
    worst = Math.max(worst, maxRelativeError(result.get(r.name)!, atW[r.updated]!.data as Float32Array));
  console.log(
    `# SAM step against two gradient evaluations: max relative error ${worst.toExponential(2)}; a plain step differs by up to ${moved.toExponential(2)}`,
  );
  assert.ok(worst <= 1e-5, `SAM step: relative error ${worst}`);
  // The check would notice a SAM step that took the plain gradient.
  assert.ok(moved > 100 * worst, `a plain step differs from SAM's by only ${moved}`);
});

test('the SAM step graph with a zero shift computes the plain step bit for bit', async () => {
  const model = loadModel(fixture('resnet_a.onnx'));
  const sgd = { momentum: MOMENTUM, nesterov: true, weightDecay: WD };
  const plain = await buildStepGraph(model, { batchSize: B, sgd });
  const sam = await buildStepGraph(model, { batchSize: B, sgd, sharpnessAware: true });
  const size = plain.imageShape.reduce((a, b) => a * b, 1);
  const batch = { images: seededFloats(size, 11), labels: Int32Array.from({ length: B }, (_, i) => i % 10) };
  const w = initializers(model);
  const zeros: Record<string, ort.Tensor> = {
    [sam.inputs.rho!]: new ort.Tensor('float32', new Float32Array([RHO]), []),
  };
  for (const p of sam.params)
    zeros[p.shift!.input] = new ort.Tensor('float32', new Float32Array(w.get(p.name)!.length), p.shape);
  const run = async (step: StepGraph, extra?: Record<string, ort.Tensor>): Promise<Outputs> => {
    const session = await ort.InferenceSession.create(serializeModel(step.model), { intraOpNumThreads: 1 });
    try {
      return await runOnce(session, step, batch, w, extra);
    } finally {
      await session.release();
    }
  };
  const [a, b] = [await run(plain), await run(sam, zeros)];
  const same = (x: string, y: string): void =>
    assert.deepEqual(
      Buffer.from((b[y]!.data as Float32Array).buffer),
      Buffer.from((a[x]!.data as Float32Array).buffer),
      y,
    );
  same(plain.outputs.loss, sam.outputs.loss);
  plain.params.forEach((p, i) => same(p.updated, sam.params[i]!.updated));
  plain.runningStats.forEach((r, i) => same(r.updated, sam.runningStats[i]!.updated));
  // The shift it hands the second pass is rho g/|g|: its norm is rho.
  const norm = Math.sqrt(
    sam.params.reduce(
      (s, p) => s + (b[p.shift!.output]!.data as Float32Array).reduce((t, x) => t + x * x, 0),
      0,
    ),
  );
  assert.ok(Math.abs(norm - RHO) <= 1e-6, `|shift| = ${norm}`);
});
