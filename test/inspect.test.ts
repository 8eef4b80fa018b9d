import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BN_KEEPING_EXPORT } from '../src/analysis/bn-report.js';
import { loadModel } from '../src/ir/load.js';
import { saveModel } from '../src/ir/save.js';
import { tensorType } from '../src/ir/types.js';
import { fixture, needsShared, runCli, sharedModel, tmpDir, type CliRun } from './helpers.js';

const cli = (...args: string[]) => runCli(args);

interface RefLayer {
  name: string;
  type: string;
  macs: number;
  params: number;
  outShape: number[];
}
const readRef = (file: string): { macs: number; params: { trainable: number }; layers: RefLayer[] } =>
  JSON.parse(fs.readFileSync(file, 'utf8'));

const commas = (n: number): string => n.toLocaleString('en-US');

/** Rows of the per-layer table: lines under the `module  op  out ch  MACs  params` header. */
function layerRows(
  text: string,
): { module: string; op: string; outChannels: number; macs: number; params: number }[] {
  const lines = text.split('\n');
  const header = lines.findIndex((l) => /^module\s+op\s+out ch\s+MACs\s+params$/.test(l));
  assert.ok(header >= 0, 'per-layer table header');
  return lines
    .slice(header + 2)
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const cells = l.trim().split(/\s{2,}/);
      const num = (s: string | undefined): number => Number((s ?? '').replace(/,/g, ''));
      const [op, outCh, macs, params] = cells.slice(-4);
      return { module: cells[0]!, op: op!, outChannels: num(outCh), macs: num(macs), params: num(params) };
    });
}

describe('adapruner inspect', () => {
  it('prints totals and, with --layers, one row per layer with the reference MACs', async () => {
    const ref = readRef(fixture('resnet_a.ref.json'));
    const r = await cli('inspect', fixture('resnet_a.onnx'), '--layers');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`MACs:\\s+${commas(ref.macs)} \\(`));
    assert.match(r.stdout, new RegExp(`params:\\s+${commas(ref.params.trainable)} \\(`));
    assert.match(r.stdout, /IR version:\s+7/);
    assert.match(r.stdout, /producer:\s+pytorch 1\.13\.0/);
    assert.match(r.stdout, /input\s+float\s+Nx3x32x32/);
    assert.match(r.stdout, /BatchNormalization\s+7\b/);
    assert.doesNotMatch(r.stdout, /no BatchNormalization/);
    const rows = layerRows(r.stdout).filter((row) => row.op === 'Conv' || row.op === 'Gemm');
    assert.deepEqual(
      rows.map((row) => [row.macs, row.params, row.outChannels]),
      ref.layers.map((l) => [l.macs, l.params, l.outShape[0]]),
    );
  });

  it('labels layers by their PyTorch module path, from BN-kept and BN-folded exports', async () => {
    for (const name of ['resnet_a', 'mobilenetv2', 'densenet']) {
      const ref = readRef(fixture(`${name}.ref.json`));
      for (const file of [`${name}.onnx`, `${name}-bnfolded.onnx`]) {
        const r = await cli('inspect', fixture(file), '--layers');
        assert.equal(r.code, 0, r.stderr);
        const rows = layerRows(r.stdout).filter((row) => row.op === 'Conv' || row.op === 'Gemm');
        assert.deepEqual(
          rows.map((row) => row.module),
          ref.layers.map((l) => l.name),
          file,
        );
      }
    }
  });

  it('--json prints one object with the totals and the layers', async () => {
    const ref = readRef(fixture('mobilenetv2.ref.json'));
    const r = await cli('inspect', fixture('mobilenetv2.onnx'), '--json');
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.macs, ref.macs);
    assert.equal(report.params.trainable, ref.params.trainable);
    assert.deepEqual(report.inputShapes, { input: [1, 3, 32, 32] });
    assert.deepEqual(report.inputs, [{ name: 'input', elemType: 'float', shape: ['N', 3, 32, 32] }]);
    assert.equal(report.batchNorm.bnFolded, false);
    const convLinear = report.layers.filter((l: { opType: string }) => l.opType !== 'BatchNormalization');
    assert.deepEqual(
      convLinear.map((l: { macs: number }) => l.macs),
      ref.layers.map((l) => l.macs),
    );
    assert.equal(report.ops.Conv, ref.layers.length - 1);
  });

  it('says plainly that BN was folded, and how to export with BN kept', async () => {
    const folded = await cli('inspect', fixture('vgg-bnfolded.onnx'));
    assert.equal(folded.code, 0, folded.stderr);
    assert.match(folded.stdout, /no BatchNormalization/);
    assert.ok(folded.stdout.includes(BN_KEEPING_EXPORT));
    assert.ok(
      BN_KEEPING_EXPORT.includes('training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False'),
    );
    const json = JSON.parse((await cli('inspect', fixture('vgg-bnfolded.onnx'), '--json')).stdout);
    assert.equal(json.batchNorm.bnFolded, true);
    assert.equal(json.macs, readRef(fixture('vgg.ref.json')).macs);
    const kept = await cli('inspect', fixture('vgg.onnx'));
    assert.doesNotMatch(kept.stdout, /no BatchNormalization|TrainingMode/);
  });

  it('counts a torchvision model at 224x224 without its (absent) weights', async () => {
    const r = await cli('inspect', fixture('torchvision/resnet50.onnx'), '--json');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).macs, 4_089_184_256);
  });

  it('--input-shape sets the shape MACs are counted at', async () => {
    const ref = readRef(fixture('fmnist_cnn.ref.json'));
    const r = await cli('inspect', fixture('fmnist_cnn.onnx'), '--json', '--input-shape', '16x1x28x28');
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.macs, ref.macs);
    assert.deepEqual(report.inputShapes, { input: [1, 1, 28, 28] });
  });

  for (const [file, macs, params] of [
    ['resnet56-cifar10.onnx', 125_485_696, 853_018],
    ['resnet56-cifar10-bnfolded.onnx', 125_485_696, 850_986],
  ] as const) {
    it(`shared ${file}`, needsShared(`models/${file}`), async () => {
      const r = await cli('inspect', sharedModel(file));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`MACs:\\s+${commas(macs)} \\(`));
      assert.match(r.stdout, new RegExp(`params:\\s+${commas(params)} \\(`));
      assert.equal(/no BatchNormalization/.test(r.stdout), file.includes('bnfolded'));
    });
  }
});

describe('adapruner inspect: user errors exit 2 with one line', () => {
  const assertOneLineError = (r: CliRun, pattern: RegExp): void => {
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, pattern);
  };

  it('a missing file', async () => {
    const missing = path.join(tmpDir(), 'missing.onnx');
    assertOneLineError(await cli('inspect', missing), /missing\.onnx/);
  });

  it('a malformed file', async () => {
    const bad = path.join(tmpDir(), 'bad.onnx');
    fs.writeFileSync(bad, Buffer.from('this is not a protobuf \xff\xff\xff\xff', 'latin1'));
    assertOneLineError(await cli('inspect', bad), /bad\.onnx/);
  });

  it('a bad --input-shape', async () => {
    assertOneLineError(
      await cli('inspect', fixture('vgg.onnx'), '--input-shape', '1x3xHx32'),
      /--input-shape '1x3xHx32'/,
    );
  });

  it('unknown spatial dims without --input-shape name the input; with it, the count works', async () => {
    const model = loadModel(fixture('resnet_b.onnx'));
    model.graph.inputs[0]!.type = tensorType(1, ['N', 3, 'H', 'W']);
    const file = path.join(tmpDir(), 'dynamic.onnx');
    saveModel(model, file);
    assertOneLineError(await cli('inspect', file), /input 'input'.*--input-shape/);
    const r = await cli('inspect', file, '--json', '--input-shape', '1x3x32x32');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).macs, readRef(fixture('resnet_b.ref.json')).macs);
  });
});
