/**
 * Fine-tuning epochs when --finetune-epochs is not given (RunContext.defaultEpochs): 1 with labels and on token
 * data; without labels on images as many as DISTIL_MACS_UNLABELLED of the original's forward passes over the
 * training images allow, from 1 to DEFAULT_DISTIL_EPOCHS_UNLABELLED, and the report says how many ran.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { openDataset } from '../src/data/open.js';
import type { PreprocessSpec } from '../src/data/preprocess.js';
import { loadModel } from '../src/ir/index.js';
import { RunContext } from '../src/pipeline/context.js';
import { DEFAULT_DISTIL_EPOCHS_UNLABELLED, DISTIL_MACS_UNLABELLED } from '../src/pipeline/defaults.js';
import type { DataOptions } from '../src/pipeline/options.js';
import type { PruneReport } from '../src/report/types.js';
import { fixture, runCli, tmpDir } from './helpers.js';

const SPEC: PreprocessSpec = {
  channels: 3,
  channelOrder: 'rgb',
  scale: 255,
  mean: [0, 0, 0],
  std: [1, 1, 1],
};
const G = 1e9;

test('epochs without labels: the most for a small network, fewer as the MACs and images grow, never under 1', async () => {
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

test('epochs with labels: one, whatever the MACs', async () => {
  const labelled = await openDataset(fixture('example/fashion-mnist'), { split: 'train' });
  const ctx = new RunContext(loadModel(fixture('dense/yolo_det.onnx')), {});
  assert.equal(ctx.defaultEpochs({ train: labelled, spec: { ...SPEC } }, 0.001 * G, 100), 1);
});

test('prune without labels and without --finetune-epochs distils for the default epochs and says so', async () => {
  const dir = tmpDir();
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'slim.onnx');
  const images = fixture('synthdet/images/val');
  // 24 images, 8 held out: the detector fixture's 16 training images take every default epoch.
  const r = await runCli([
    'prune',
    fixture('dense/yolo_det.onnx'),
    '--flops',
    '0.5',
    '--data',
    images,
    '--preset',
    'yolo',
    '--criterion',
    'l1',
    '--widths',
    'structural',
    '--calibration-images',
    '8',
    '--json',
    '-o',
    out,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(fs.readFileSync(`${out}.report.json`, 'utf8')) as PruneReport;
  const note = report.notes.find((n) => /^distillation ran \d+ epochs/.test(n));
  assert.ok(note, JSON.stringify(report.notes));
  assert.match(note, new RegExp(`ran ${DEFAULT_DISTIL_EPOCHS_UNLABELLED} epochs`));
  assert.ok(
    report.accuracy.some((a) => a.stage === 'finetuned'),
    JSON.stringify(report.accuracy),
  );
});
