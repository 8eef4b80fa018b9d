/**
 * How many training images compensation fits on (RunContext.compensationImages): without labels up to
 * DEFAULT_COMPENSATION_IMAGES_UNLABELLED at inputs up to 224x224 and fewer by the pixels above, never under the
 * images held out to rank the candidates; a given --calibration-images, labels, or token data keep the
 * held-out count. Also for a model fixed at batch 1, which runs them one at a time.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openDataset } from '../src/data/open.js';
import type { PreprocessSpec } from '../src/data/preprocess.js';
import { loadModel } from '../src/ir/index.js';
import { RunContext } from '../src/pipeline/context.js';
import {
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

test('compensation images: 256 at 64x64 even at a fixed batch of 1, fewer by the pixels at 640x640, never under the held-out 64', async () => {
  const images = await openDataset(fixture('synthdet/images/val'), { labels: 'optional' });
  const data: DataOptions = { train: images, spec: { ...SPEC } };
  const fixedBatch = loadModel(fixture('dense/yolo_det.onnx')); // [1, 3, 64, 64]
  assert.equal(
    new RunContext(fixedBatch, {}).compensationImages(data),
    DEFAULT_COMPENSATION_IMAGES_UNLABELLED,
  );
  assert.equal(new RunContext(fixedBatch, {}).runBatchOf(256), 1, 'runs still take the fixed batch');
  const dynamic = loadModel(fixture('dense/yolo_det-dynamic.onnx')); // [batch, 3, height, width]
  const at = (h: number, w: number): number =>
    new RunContext(dynamic, { inputShapes: { images: [1, 3, h, w] } }).compensationImages(data);
  assert.equal(at(224, 224), 256);
  assert.equal(at(320, 320), 125); // floor(256 * 224² / 320²)
  assert.equal(at(640, 640), DEFAULT_CALIBRATION_IMAGES_UNLABELLED, 'never under the held-out count');
  const given = new RunContext(fixedBatch, {}).compensationImages({ ...data, calibrationImages: 8 });
  assert.equal(given, 8, '--calibration-images is kept');
});

test('compensation images with labels: as many as are held out, as before', async () => {
  const labelled = await openDataset(fixture('example/fashion-mnist'), { split: 'train' });
  const model = loadModel(fixture('dense/yolo_det.onnx'));
  const data: DataOptions = { train: labelled, spec: { ...SPEC } };
  assert.equal(new RunContext(model, {}).compensationImages(data), DEFAULT_CALIBRATION_IMAGES);
});
