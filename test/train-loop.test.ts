import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { openDataset } from '../src/data/open.js';
import { PRESETS } from '../src/data/preprocess.js';
import { mulberry32 } from '../src/data/prng.js';
import { balancedSubset } from '../src/data/subset.js';
import { loadModel, serializeModel } from '../src/ir/index.js';
import type { Model } from '../src/ir/model.js';
import { evaluate } from '../src/runtime/evaluate.js';
import { finetune } from '../src/train/loop.js';
import { fixture, needsShared, sharedModel, SHARED, tmpDir } from './helpers.js';
import fs from 'node:fs';

const FMNIST = '/usr/share/datasets/fashion-mnist';
const needsFmnist = {
  skip: fs.existsSync(FMNIST) ? false : `${FMNIST} is absent (Debian package dataset-fashion-mnist)`,
} as const;

/** Adds seeded Gaussian noise of `relative` times each conv/linear weight's RMS to it. */
function perturb(model: Model, relative: number, seed: number): void {
  const random = mulberry32(seed);
  const gauss = (): number => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  for (const v of model.graph.initializers) {
    const t = v.initializer!;
    if (t.dims.length < 2) continue;
    const w = Float32Array.from(t.data as Float32Array);
    const rms = Math.sqrt(w.reduce((a, x) => a + x * x, 0) / w.length);
    for (let i = 0; i < w.length; i++) w[i]! += relative * rms * gauss();
    t.setData(w);
  }
}

test(
  'fine-tuning a perturbed ResNet-20 on CIFAR-10 recovers accuracy',
  needsShared('models/resnet20-cifar10.onnx', 'data/cifar10-jpg.tar'),
  async () => {
    const tar = path.join(SHARED, 'data', 'cifar10-jpg.tar');
    const [train, testSet] = [
      await openDataset(tar, { split: 'train' }),
      await openDataset(tar, { split: 'test' }),
    ];
    const model = loadModel(sharedModel('resnet20-cifar10.onnx'));
    perturb(model, 0.5, 7);
    const spec = PRESETS.cifar10;
    const subset = balancedSubset(testSet.labels, 1000, 3);
    const accuracy = async (m: Model): Promise<number> =>
      (await evaluate(serializeModel(m), testSet, { spec, indices: subset, runtime: { threads: 2 } })).top1;
    const before = await accuracy(model);
    const result = await finetune(model, train, {
      epochs: 1,
      batchSize: 32,
      lr: 0.02,
      limit: 32 * 100,
      spec,
      seed: 1,
      threads: 2,
      schedule: { kind: 'constant' },
    });
    const after = await accuracy(result.model);
    console.log(
      `# perturbed ResNet-20: ${(100 * before).toFixed(1)}% -> ${(100 * after).toFixed(1)}% after 100 steps of 32 (${result.history[0]!.imagesPerSecond.toFixed(0)} img/s)`,
    );
    assert.ok(after >= before + 0.15, `accuracy ${before} -> ${after}`);
  },
);

test('fine-tuning fmnist_cnn from its random init learns Fashion-MNIST', needsFmnist, async () => {
  const [train, testSet] = [
    await openDataset(FMNIST, { split: 'train' }),
    await openDataset(FMNIST, { split: 'test' }),
  ];
  const model = loadModel(fixture('fmnist_cnn.onnx'));
  const spec = PRESETS.fmnist;
  const subset = balancedSubset(testSet.labels, 1000, 3);
  const before = (
    await evaluate(serializeModel(model), testSet, { spec, indices: subset, runtime: { threads: 2 } })
  ).top1;
  const result = await finetune(model, train, {
    epochs: 2,
    batchSize: 64,
    lr: 0.05,
    limit: 64 * 100,
    spec,
    val: testSet,
    valIndices: subset,
    threads: 2,
  });
  console.log(
    `# fmnist_cnn: ${(100 * before).toFixed(1)}% -> ${(100 * result.best!.accuracy).toFixed(1)}% after 200 steps of 64`,
  );
  assert.ok(result.best!.accuracy >= before + 0.4, `accuracy ${before} -> ${result.best!.accuracy}`);
  assert.equal(result.history.length, 2);
  // The returned model is the inference model: same nodes, same initializer names, no training ops.
  assert.deepEqual(
    result.model.graph.nodes.map((n) => n.opType),
    model.graph.nodes.map((n) => n.opType),
  );
  assert.deepEqual(
    result.model.graph.initializers.map((v) => v.name),
    model.graph.initializers.map((v) => v.name),
  );
});

test(
  'a run stopped after epoch 1 and resumed ends with the same weights as an uninterrupted run',
  needsFmnist,
  async () => {
    const train = await openDataset(FMNIST, { split: 'train' });
    const model = loadModel(fixture('fmnist_cnn.onnx'));
    const dir = tmpDir();
    const options = {
      epochs: 2,
      batchSize: 32,
      lr: 0.05,
      limit: 320,
      spec: PRESETS.fmnist,
      seed: 5,
      threads: 1,
    };
    const straight = await finetune(model, train, options);
    const checkpoint = path.join(dir, 'run.ckpt');
    const first = await finetune(model, train, { ...options, checkpoint, stopAfterEpoch: 1 });
    assert.equal(first.epochsDone, 1);
    const resumed = await finetune(model, train, { ...options, checkpoint, resume: true });
    assert.equal(resumed.epochsDone, 2);
    assert.equal(resumed.history.length, 2);
    const weights = (m: Model): Map<string, Float32Array> =>
      new Map(m.graph.initializers.map((v) => [v.name, v.initializer!.data as Float32Array]));
    const [a, b] = [weights(straight.model), weights(resumed.model)];
    let changed = 0;
    for (const [name, w] of a) {
      assert.deepEqual(b.get(name), w, `${name} differs after resume`);
      if (!w.every((x, i) => x === (weights(model).get(name)! as Float32Array)[i])) changed++;
    }
    assert.ok(changed > 10, 'training changed the weights');
    assert.deepEqual(
      resumed.history.map((h) => h.loss),
      straight.history.map((h) => h.loss),
    );
  },
);
