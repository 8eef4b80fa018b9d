import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { openDataset } from '../src/data/open.js';
import { PRESETS } from '../src/data/preprocess.js';
import { evaluate } from '../src/runtime/evaluate.js';
import { REPO, SHARED, fixture, needsShared, sharedModel, tmpDir } from './helpers.js';

const CIFAR_TAR = path.join(SHARED, 'data/cifar10-jpg.tar');

/** Runs the real CLI in a child process: exit code, stdout, stderr. */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(REPO, 'bin/adapruner.ts'), ...args],
      { cwd: REPO, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** A one-line `adapruner: FILE: reason` message and exit code 2. */
function assertUserError(result: { code: number; stderr: string }, pattern: RegExp): void {
  assert.equal(result.code, 2, result.stderr);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${result.stderr}`);
  assert.match(lines[0]!, /^adapruner: /);
  assert.match(lines[0]!, pattern);
}

describe(
  'accuracy on the shared CIFAR-10 test set (10,000 JPEGs)',
  needsShared('data/cifar10-jpg.tar', 'models'),
  () => {
    it('ResNet-56: 83.20% top-1 (8320 correct), as torch and onnxruntime measured it', async () => {
      const test = await openDataset(CIFAR_TAR, { split: 'test' });
      const result = await evaluate(sharedModel('resnet56-cifar10.onnx'), test, { spec: PRESETS.cifar10 });
      assert.equal(result.n, 10_000);
      assert.equal(result.correctTop1, 8320);
      assert.ok(result.correctTop5 >= result.correctTop1);
    });

    it('ResNet-20 through the CLI with --json: 81.03% (8103), with the spec recorded', async () => {
      const r = await cli([
        'eval',
        sharedModel('resnet20-cifar10.onnx'),
        '--data',
        CIFAR_TAR,
        '--preset',
        'cifar10',
        '--json',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const report = JSON.parse(r.stdout);
      assert.equal(report.n, 10_000);
      assert.equal(report.correctTop1, 8103);
      assert.equal(report.top1, 0.8103);
      assert.equal(report.preprocessing.source, 'preset cifar10');
      assert.deepEqual(report.preprocessing.spec.std, [0.229, 0.224, 0.225]);
      assert.equal(report.data.kind, 'image-folder');
      assert.equal(report.data.split, 'test');
      assert.ok(report.imagesPerSecond > 0);
      // Not a terminal: progress is plain lines on stderr, nothing on stdout but the JSON.
      assert.doesNotMatch(r.stderr, /\x1b\[/);
    });
  },
);

describe('CLI errors: one line naming the file, exit code 2', () => {
  const model = fixture('resnet_a.onnx');

  it('a corrupt image', async () => {
    const root = tmpDir('adapruner-cli-corrupt-');
    fs.mkdirSync(path.join(root, 'a'));
    const png = await sharp(Buffer.alloc(32 * 32 * 3, 90), { raw: { width: 32, height: 32, channels: 3 } })
      .png()
      .toBuffer();
    fs.writeFileSync(path.join(root, 'a', 'good.png'), png);
    fs.writeFileSync(path.join(root, 'a', 'torn.png'), png.subarray(0, 60));
    assertUserError(
      await cli(['eval', model, '--data', root, '--preset', 'cifar10']),
      /a\/torn\.png: cannot decode the image/,
    );
  });

  it('an empty class folder', async () => {
    const root = tmpDir('adapruner-cli-empty-');
    fs.mkdirSync(path.join(root, 'cats'));
    fs.mkdirSync(path.join(root, 'dogs'));
    await sharp(Buffer.alloc(32 * 32 * 3), { raw: { width: 32, height: 32, channels: 3 } })
      .png()
      .toFile(path.join(root, 'cats', '1.png'));
    assertUserError(
      await cli(['eval', model, '--data', root, '--preset', 'cifar10']),
      /dogs: class folder has no images/,
    );
  });

  it('an unreadable path (data and model)', async () => {
    const missing = path.join(tmpDir('adapruner-cli-missing-'), 'nowhere');
    assertUserError(
      await cli(['eval', model, '--data', missing, '--preset', 'cifar10']),
      /nowhere: cannot read the data \(no such file or folder\)/,
    );
    const root = tmpDir('adapruner-cli-model-');
    fs.mkdirSync(path.join(root, 'a'));
    await sharp(Buffer.alloc(32 * 32 * 3), { raw: { width: 32, height: 32, channels: 3 } })
      .png()
      .toFile(path.join(root, 'a', '1.png'));
    assertUserError(
      await cli(['eval', `${missing}.onnx`, '--data', root, '--preset', 'cifar10']),
      /nowhere\.onnx: (cannot load the model|cannot read: ENOENT)/,
    );
  });

  it('images of the wrong size for the model', async () => {
    const root = tmpDir('adapruner-cli-size-');
    fs.mkdirSync(path.join(root, 'a'));
    await sharp(Buffer.alloc(28 * 28), { raw: { width: 28, height: 28, channels: 1 } })
      .png()
      .toFile(path.join(root, 'a', '1.png'));
    assertUserError(
      await cli(['eval', model, '--data', root, '--preset', 'fmnist']),
      /resnet_a\.onnx: expects input \[N,3,32,32\] but the data \(.*1\.png\) gives \[1,1,28,28\]/,
    );
  });

  it('no preprocessing given', async () => {
    const root = tmpDir('adapruner-cli-nospec-');
    fs.mkdirSync(path.join(root, 'a'));
    assertUserError(await cli(['eval', model, '--data', root]), /say how to preprocess the images: --preset/);
  });
});

describe('recalibrate and bench commands', () => {
  it('recalibrate writes a model that evaluates, and reports what it did as JSON', async () => {
    const root = tmpDir('adapruner-cli-recal-');
    for (let i = 0; i < 6; i++) {
      fs.mkdirSync(path.join(root, 'train', `c${i % 3}`), { recursive: true });
      const pixels = Buffer.from(Array.from({ length: 32 * 32 * 3 }, (_, k) => (k * (i + 3)) % 256));
      await sharp(pixels, { raw: { width: 32, height: 32, channels: 3 } })
        .png()
        .toFile(path.join(root, 'train', `c${i % 3}`, `${i}.png`));
    }
    const out = path.join(root, 'recalibrated.onnx');
    const r = await cli([
      'recalibrate',
      fixture('resnet_a.onnx'),
      '--data',
      root,
      '--preset',
      'cifar10',
      '--batches',
      '2',
      '--batch',
      '3',
      '-o',
      out,
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.deepEqual([report.layers, report.images, report.batches, report.augment], [7, 6, 2, true]);
    assert.equal(report.data.split, 'train');
    assert.ok(fs.existsSync(out));
    const again = await cli([
      'eval',
      out,
      '--data',
      path.join(root, 'train'),
      '--preset',
      'cifar10',
      '--json',
    ]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).n, 6);
  });

  it('recalibrate refuses a BN-folded model', async () => {
    const root = tmpDir('adapruner-cli-recal-folded-');
    fs.mkdirSync(path.join(root, 'a'));
    await sharp(Buffer.alloc(32 * 32 * 3), { raw: { width: 32, height: 32, channels: 3 } })
      .png()
      .toFile(path.join(root, 'a', '1.png'));
    assertUserError(
      await cli([
        'recalibrate',
        fixture('resnet_a-bnfolded.onnx'),
        '--data',
        root,
        '--preset',
        'cifar10',
        '-o',
        path.join(root, 'x.onnx'),
      ]),
      /resnet_a-bnfolded\.onnx: has no BatchNormalization nodes/,
    );
  });

  it('bench --vs alternates two models and reports the ratio', async () => {
    const r = await cli([
      'bench',
      fixture('resnet_a.onnx'),
      '--vs',
      fixture('resnet_a-bnfolded.onnx'),
      '--batch',
      '4',
      '--runs',
      '5',
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.models.length, 2);
    assert.equal(report.models[0].runs, 5);
    assert.ok(Math.abs(report.speedup - report.models[1].medianMs / report.models[0].medianMs) < 1e-12);
    const help = await cli(['bench', '--help']);
    assert.match(help.stdout, /--vs/);
  });

  it('bench takes NAME=SHAPE per input (token ids and a mask), and names the inputs when one is wrong', async () => {
    const model = fixture('transformers/bert_mask.onnx');
    const shapes = ['input_ids', 'token_type_ids', 'attention_mask'].flatMap((n) => [
      '--input-shape',
      `${n}=1x12`,
    ]);
    const r = await cli(['bench', model, ...shapes, '--runs', '2', '--warmup', '0', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).models[0].inputShape, [1, 12]);
    const bad = await cli(['bench', model, '--input-shape', 'ids=1x12', '--runs', '2']);
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /'ids', which is not an input of the model \(inputs: input_ids, token_type_ids, attention_mask\)/,
    );
  });
});
