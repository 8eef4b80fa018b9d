import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { FIXTURES, runCli, tmpDir } from './helpers.js';

const YOLO = path.join(FIXTURES, 'dense', 'yolo_det.onnx');
const DEEPLAB = path.join(FIXTURES, 'dense', 'deeplabv3_mnv3.onnx');
const YOLO_SPEC = ['--mean', '0,0,0', '--std', '1,1,1'];

/** 64x64 images with a few bright rectangles, and (optionally) their YOLO labels. */
async function detectionSet(root: string, images: number, label: (i: number) => string | undefined) {
  fs.mkdirSync(path.join(root, 'images'), { recursive: true });
  fs.mkdirSync(path.join(root, 'labels'), { recursive: true });
  for (let i = 0; i < images; i++) {
    const px = Buffer.alloc(64 * 64 * 3, 40);
    for (let y = 10 + i; y < 30 + i; y++)
      for (let x = 8; x < 40; x++) px.fill(200 + i, (y * 64 + x) * 3, (y * 64 + x) * 3 + 3);
    await sharp(px, { raw: { width: 64, height: 64, channels: 3 } })
      .png()
      .toFile(path.join(root, 'images', `im${i}.png`));
    const text = label(i);
    if (text !== undefined) fs.writeFileSync(path.join(root, 'labels', `im${i}.txt`), text);
  }
  return root;
}

/** One `adapruner: ...` line and exit code 2. */
function assertOneLine(r: { code: number; stderr: string }, pattern: RegExp) {
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr
    .trim()
    .split('\n')
    .filter((l) => !/^eval: /.test(l));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, pattern);
}

describe('eval --task detect on YOLO-labelled images (the untrained fixture)', () => {
  let data: string;
  before(async () => {
    data = await detectionSet(tmpDir('adapruner-detect-'), 4, (i) =>
      i === 3 ? undefined : `${i % 3} 0.375 0.3 0.5 0.3125\n`,
    );
  });

  it('reports mAP50 and mAP50-95 near 0 against the labels, and fidelity 1 exactly against itself', async () => {
    const r = await runCli([
      'eval',
      YOLO,
      '--data',
      data,
      '--task',
      'detect',
      ...YOLO_SPEC,
      '--against',
      YOLO,
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.task, 'detect');
    assert.equal(report.n, 4);
    assert.equal(report.layout.boxes, '[1,4+nc,N]');
    assert.equal(report.layout.classes, 3);
    assert.equal(report.labelled.counts.boxes, 3);
    assert.ok(report.labelled.values['mAP50-95'] < 0.05, r.stdout);
    assert.ok(report.labelled.values.mAP50 < 0.2, r.stdout);
    assert.equal(report.fidelity.value, 1);
    assert.equal(report.fidelity.values.mAP50, 1);
    assert.ok(report.fidelity.counts.boxes > 0);
    assert.equal(report.data.withoutLabelFile, 1);
    assert.match(report.data.labels, /3 of 4 images; 1 without a label file, counted as background/);
  });

  it('text output names the figures', async () => {
    const r = await runCli(['eval', YOLO, '--data', data, '--task', 'detect', ...YOLO_SPEC]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /labels mAP50-95: +0\.\d{4}/);
    assert.match(r.stdout, /labels counts: +3 boxes, \d+ detections/);
  });

  it('bad labels: a class out of range, a box outside [0, 1], five fields expected: one line naming file and line', async () => {
    const cases: [string, RegExp][] = [
      [
        '0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1\n',
        /im0\.txt: line 2: class 3 is out of range: the model has 3 classes/,
      ],
      ['1 0.5 1.2 0.1 0.1\n', /im0\.txt: line 1: the box is outside \[0, 1\]/],
      ['1 0.5 0.5 0.1\n', /im0\.txt: line 1: expected 5 numbers/],
      ['1 0.5 zero 0.1 0.1\n', /im0\.txt: line 1: field 3 is not a number/],
    ];
    for (const [text, pattern] of cases) {
      const bad = await detectionSet(tmpDir('adapruner-badlabel-'), 1, () => text);
      const r = await runCli(['eval', YOLO, '--data', bad, '--task', 'detect', ...YOLO_SPEC]);
      assertOneLine(r, pattern);
    }
  });

  it('no labels and no --against, or an empty folder: one line', async () => {
    const unlabelled = await detectionSet(tmpDir('adapruner-nolabel-'), 1, () => undefined);
    assertOneLine(
      await runCli(['eval', YOLO, '--data', unlabelled, '--task', 'detect', ...YOLO_SPEC]),
      /has no labels for detect .*give --against ORIGINAL\.onnx/,
    );
    const r = await runCli([
      'eval',
      YOLO,
      '--data',
      unlabelled,
      '--task',
      'detect',
      ...YOLO_SPEC,
      '--against',
      YOLO,
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).labelled, undefined);
    const empty = tmpDir('adapruner-empty-');
    assertOneLine(
      await runCli(['eval', YOLO, '--data', empty, '--task', 'detect', ...YOLO_SPEC]),
      /has no images/,
    );
  });
});

describe('eval --task segment on DeepLabV3 (the fixture)', () => {
  let data: string;
  before(async () => {
    data = tmpDir('adapruner-segment-');
    fs.mkdirSync(path.join(data, 'images'));
    for (let i = 0; i < 3; i++) {
      const px = Buffer.alloc(64 * 64 * 3);
      for (let j = 0; j < px.length; j++) px[j] = (j * 7 + i * 50) % 256;
      await sharp(px, { raw: { width: 64, height: 64, channels: 3 } })
        .png()
        .toFile(path.join(data, 'images', `s${i}.png`));
    }
  });

  it('--against itself: mIoU 1 and pixel accuracy 1 exactly', async () => {
    const r = await runCli([
      'eval',
      DEEPLAB,
      '--data',
      data,
      '--task',
      'segment',
      '--preset',
      'imagenet',
      '--resize',
      '64',
      '--crop',
      '64',
      '--against',
      DEEPLAB,
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.fidelity.value, 1);
    assert.equal(report.fidelity.values.pixelAccuracy, 1);
    assert.equal(report.layout.classes, 4);
  });

  it('masks: measured against them; a mask with a class out of range, or masks for some images only, is one line', async () => {
    const masks = path.join(data, 'masks');
    fs.mkdirSync(masks, { recursive: true });
    const writeMask = (name: string, value: number) =>
      sharp(Buffer.alloc(64 * 64, value), { raw: { width: 64, height: 64, channels: 1 } })
        .toColourspace('b-w')
        .png()
        .toFile(path.join(masks, name));
    await writeMask('s0.png', 1);
    const args = [
      'eval',
      DEEPLAB,
      '--data',
      data,
      '--task',
      'segment',
      '--preset',
      'imagenet',
      '--resize',
      '64',
      '--crop',
      '64',
    ];
    assertOneLine(await runCli(args), /s1\.png: has no mask in .*masks .*1 of 3 images have one/);
    await writeMask('s1.png', 2);
    await writeMask('s2.png', 9);
    assertOneLine(
      await runCli(args),
      /s2\.png: pixel \(0, 0\) has class 9, out of range: the model has 4 classes/,
    );
    await writeMask('s2.png', 255);
    const r = await runCli([...args, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout).labelled;
    assert.ok(m.value >= 0 && m.value <= 1);
    assert.ok(m.values.pixelAccuracy >= 0 && m.values.pixelAccuracy <= 1);
  });
});
