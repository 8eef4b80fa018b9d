/**
 * The recovery defaults bounded by the original's MACs without labels. How many training images compensation
 * fits on (RunContext.compensationImages): as many as COMPENSATION_MACS_UNLABELLED of the original's forward
 * passes allow, at most DEFAULT_COMPENSATION_IMAGES_UNLABELLED and never under the images held out to rank the
 * candidates; a given --calibration-images, labels, or token data keep the held-out count. How many epochs
 * distillation runs when --finetune-epochs is not given (RunContext.defaultEpochs): as many as
 * DISTIL_MACS_UNLABELLED of forward passes over the training images allow, from 1 to
 * DEFAULT_DISTIL_EPOCHS_UNLABELLED; 1 with labels.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openDataset } from '../src/data/open.js';
import type { PreprocessSpec } from '../src/data/preprocess.js';
import { loadModel } from '../src/ir/index.js';
import { RunContext } from '../src/pipeline/context.js';
import {
  COMPENSATION_MACS_UNLABELLED,
  DEFAULT_CALIBRATION_IMAGES,
  DEFAULT_CALIBRATION_IMAGES_UNLABELLED,
  DEFAULT_COMPENSATION_IMAGES_UNLABELLED,
  DEFAULT_DISTIL_EPOCHS_UNLABELLED,
  DISTIL_MACS_UNLABELLED,
} from '../src/pipeline/defaults.js';
import type { DataOptions } from '../src/pipeline/options.js';
import { fixture } from './helpers.js';

const SPEC: PreprocessSpec = {
  channels: 3,
  channelOrder: 'rgb',
  scale: 255,
  mean: [0, 0, 0],
  std: [1, 1, 1],
};
const G = 1e9;

test('compensation images without labels: the most for a small network, fewer as the MACs grow, never under the held-out count', async () => {
  const images = await openDataset(fixture('synthdet/images/val'), { labels: 'optional' });
  const data: DataOptions = { train: images, spec: { ...SPEC } };
  const ctx = new RunContext(loadModel(fixture('dense/yolo_det.onnx')), {});
  const most = DEFAULT_COMPENSATION_IMAGES_UNLABELLED;
  const held = DEFAULT_CALIBRATION_IMAGES_UNLABELLED;
  // A 96x96 yolov8n-width detector (0.091 G) and a CIFAR ResNet-20 (0.041 G) take the most.
  assert.equal(ctx.compensationImages(data, 0.091 * G), most);
  assert.equal(ctx.compensationImages(data, 0.041 * G), most);
  // Between: as many as the MACs allow.
  const mid = ctx.compensationImages(data, 1 * G);
  assert.equal(mid, Math.floor(COMPENSATION_MACS_UNLABELLED / G));
  assert.ok(mid > held && mid < most, `${mid}`);
  // A yolov8n at 640x640 (4.37 G) and ResNet-50 at 224x224 (4.1 G) stay at the held-out count.
  assert.equal(ctx.compensationImages(data, 4.37 * G), held);
  assert.equal(ctx.compensationImages(data, 4.1 * G), held);
  assert.equal(
    ctx.compensationImages({ ...data, calibrationImages: 8 }, 0.091 * G),
    8,
    'a given count is kept',
  );
});

test('compensation images with labels: as many as are held out, as before', async () => {
  const labelled = await openDataset(fixture('example/fashion-mnist'), { split: 'train' });
  const ctx = new RunContext(loadModel(fixture('dense/yolo_det.onnx')), {});
  assert.equal(
    ctx.compensationImages({ train: labelled, spec: { ...SPEC } }, 0.001 * G),
    DEFAULT_CALIBRATION_IMAGES,
  );
});

test('distillation epochs without labels: the most for a small network, fewer as the MACs and images grow, never under 1', async () => {
  const images = await openDataset(fixture('synthdet/images/val'), { labels: 'optional' });
  const data: DataOptions = { train: images, spec: { ...SPEC } };
  const ctx = new RunContext(loadModel(fixture('dense/yolo_det.onnx')), {});
  const most = DEFAULT_DISTIL_EPOCHS_UNLABELLED;
  // A 96x96 yolov8n-width detector (0.091 G) over 236 images, a CIFAR ResNet-20 (0.041 G) over 536.
  assert.equal(ctx.defaultEpochs(data, 0.091 * G, 236), most);
  assert.equal(ctx.defaultEpochs(data, 0.041 * G, 536), most);
  // Between: as many as the MACs allow.
  const mid = ctx.defaultEpochs(data, 0.5 * G, 236);
  assert.equal(mid, Math.floor(DISTIL_MACS_UNLABELLED / (0.5 * G * 236)));
  assert.ok(mid > 1 && mid < most, `${mid}`);
  assert.ok(ctx.defaultEpochs(data, 0.5 * G, 2000) < mid, 'more images, fewer epochs');
  // A yolov8n at 640x640 (4.37 G) and PP-OCRv4 at 640x640 (2.3 G) over a few hundred images: one epoch.
  assert.equal(ctx.defaultEpochs(data, 4.37 * G, 236), 1);
  assert.equal(ctx.defaultEpochs(data, 2.3 * G, 256), 1);
  assert.equal(ctx.defaultEpochs(data, 100 * G, 10_000), 1, 'never under one');
});

test('distillation epochs with labels: one, whatever the MACs', async () => {
  const labelled = await openDataset(fixture('example/fashion-mnist'), { split: 'train' });
  const ctx = new RunContext(loadModel(fixture('dense/yolo_det.onnx')), {});
  assert.equal(ctx.defaultEpochs({ train: labelled, spec: { ...SPEC } }, 0.001 * G, 100), 1);
});
