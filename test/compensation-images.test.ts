/**
 * How many training images compensation fits on (RunContext.compensationImages): without labels as many as
 * COMPENSATION_MACS_UNLABELLED of the original's forward passes allow, at most
 * DEFAULT_COMPENSATION_IMAGES_UNLABELLED and never under the images held out to rank the candidates; a given
 * --calibration-images, labels, or token data keep the held-out count.
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
