import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { openDataset } from '../src/data/open.js';
import { PRESETS } from '../src/data/preprocess.js';
import { balancedSubset } from '../src/data/subset.js';
import { loadModel, serializeModel, type Model } from '../src/ir/index.js';
import { findBatchNormLayers } from '../src/passes/bn-stats-graph.js';
import { evaluate } from '../src/runtime/evaluate.js';
import { recalibrateBatchNorm } from '../src/runtime/recalibrate.js';
import { SHARED, needsShared, sharedModel } from './helpers.js';

const CIFAR_TAR = path.join(SHARED, 'data/cifar10-jpg.tar');
const BASELINE = 0.832; // ResNet-56 on the 10,000 test JPEGs (models/README.md; reproduced in eval.test.ts)

function runningStats(model: Model): Float32Array[] {
  return findBatchNormLayers(model, 'resnet56').flatMap((l) => [
    (l.runningMean.initializer!.data as Float32Array).slice(),
    (l.runningVar.initializer!.data as Float32Array).slice(),
  ]);
}

describe(
  'adaptive BN on the shared ResNet-56 (20 batches of 128 training images)',
  needsShared('data/cifar10-jpg.tar', 'models/resnet56-cifar10.onnx'),
  () => {
    it('keeps accuracy, and restores it after the running statistics are scrambled', async () => {
      const train = await openDataset(CIFAR_TAR, { split: 'train' });
      const test = await openDataset(CIFAR_TAR, { split: 'test' });
      const spec = PRESETS.cifar10;
      const options = { spec, batches: 20, batchSize: 128, seed: 0 };
      const accuracy = async (model: Model, indices?: Int32Array) =>
        (await evaluate(serializeModel(model), test, { spec, ...(indices && { indices }) })).top1;

      const recalibrated = loadModel(sharedModel('resnet56-cifar10.onnx'));
      const result = await recalibrateBatchNorm(recalibrated, train, options);
      assert.deepEqual([result.layers, result.images, result.batches], [55, 2560, 20]);
      const recalibratedTop1 = await accuracy(recalibrated);
      // Re-estimating on these JPEG training images adapts BN to the JPEG data: accuracy rises (84.9% measured).
      assert.ok(recalibratedTop1 >= BASELINE - 0.005, `recalibrated ${recalibratedTop1}`);

      const scrambled = loadModel(sharedModel('resnet56-cifar10.onnx'));
      for (const layer of findBatchNormLayers(scrambled, 'resnet56')) {
        const mean = layer.runningMean.initializer!;
        const variance = layer.runningVar.initializer!;
        mean.setData((mean.data as Float32Array).map((m, c) => m + (c % 3) - 1));
        variance.setData((variance.data as Float32Array).map((v, c) => v * (0.05 + (c % 7))));
      }
      const subset = balancedSubset(test.labels, 2000, 1);
      const scrambledTop1 = await accuracy(scrambled, subset);
      assert.ok(scrambledTop1 < 0.3, `scrambling must hurt (${scrambledTop1} on a 2,000-image subset)`);

      await recalibrateBatchNorm(scrambled, train, options);
      // Train-mode statistics never read the old running statistics: the result is the same, bit for bit.
      assert.deepEqual(runningStats(scrambled), runningStats(recalibrated));
      const restoredTop1 = await accuracy(scrambled);
      assert.ok(restoredTop1 >= BASELINE - 0.005, `restored ${restoredTop1}`);
      assert.equal(restoredTop1, recalibratedTop1);
    });
  },
);
