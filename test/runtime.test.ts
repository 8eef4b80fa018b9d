import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { batches } from '../src/data/batches.js';
import { openDataset } from '../src/data/open.js';
import type { PreprocessSpec } from '../src/data/preprocess.js';
import { mulberry32 } from '../src/data/prng.js';
import { shuffledIndices } from '../src/data/subset.js';
import { decodeModel, loadModel, serializeModel } from '../src/ir/index.js';
import { benchmark } from '../src/runtime/benchmark.js';
import { buildBatchNormStatsGraph, findBatchNormLayers } from '../src/passes/bn-stats-graph.js';
import { cudaUnavailableReason } from '../src/runtime/device.js';
import { evaluate } from '../src/runtime/evaluate.js';
import { recalibrateBatchNorm } from '../src/runtime/recalibrate.js';
import { checkInputShape, createSession } from '../src/runtime/session.js';
import { FIXTURE_MODELS, fixture, needsShared, sharedModel, tmpDir } from './helpers.js';

interface ArrayRef {
  byteOffset: number;
  numel: number;
  shape: number[];
}

function readArray(binFile: string, ref: ArrayRef): Float32Array {
  const bytes = fs.readFileSync(binFile);
  return new Float32Array(
    bytes.buffer.slice(bytes.byteOffset + ref.byteOffset, bytes.byteOffset + ref.byteOffset + ref.numel * 4),
  );
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('sessions', () => {
  it('runs a model from a file and from bytes, matching the float64 reference logits', async () => {
    const ref = JSON.parse(fs.readFileSync(fixture('resnet_a.ref.json'), 'utf8'));
    const input = readArray(fixture(ref.bin.file), ref.bin.arrays.input);
    const logits = readArray(fixture(ref.bin.file), ref.bin.arrays.logits);
    for (const source of [
      fixture('resnet_a.onnx'),
      new Uint8Array(fs.readFileSync(fixture('resnet_a.onnx'))),
    ]) {
      const session = await createSession(source, { threads: 1 });
      assert.equal(session.inputName, 'input');
      assert.deepEqual(session.inputShape, ['N', 3, 32, 32]);
      assert.equal(session.device, 'cpu');
      const out = await session.run(input, [2, 3, 32, 32]);
      assert.ok(maxAbsDiff(out, logits) < 1e-4, `max diff ${maxAbsDiff(out, logits)}`);
      await session.release();
    }
  });

  it('refuses bad model files and impossible input shapes, naming the model', async () => {
    const dir = tmpDir('adapruner-session-');
    const junk = path.join(dir, 'junk.onnx');
    fs.writeFileSync(junk, 'not a model');
    await assert.rejects(
      createSession(junk),
      /junk\.onnx: (cannot load the model|not a valid ONNX protobuf)/,
    );
    await assert.rejects(
      createSession(fixture('resnet_a.onnx'), { threads: 0 }),
      /--threads must be a positive integer/,
    );
    const session = await createSession(fixture('resnet_a.onnx'));
    assert.throws(
      () => checkInputShape(session, [4, 1, 28, 28]),
      /resnet_a\.onnx: expects input \[N,3,32,32\] but the data gives \[4,1,28,28\]/,
    );
    checkInputShape(session, [7, 3, 32, 32]);
    await session.release();
  });

  it('device cuda without the CUDA provider fails with install instructions; auto says it picked cpu', async (t) => {
    const reason = cudaUnavailableReason();
    if (reason === undefined) return t.skip('the CUDA provider is installed here');
    await assert.rejects(
      createSession(fixture('resnet_a.onnx'), { device: 'cuda' }),
      (e: Error) =>
        /--device cuda: the CUDA execution provider is not installed/.test(e.message) &&
        /ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node/.test(e.message),
    );
    const notices: string[] = [];
    const session = await createSession(fixture('resnet_a.onnx'), {
      device: 'auto',
      notice: (m) => notices.push(m),
    });
    assert.equal(session.device, 'cpu');
    assert.match(
      notices.join('\n'),
      /device auto: picked cpu \(the CUDA execution provider is not installed/,
    );
    await session.release();
  });
});

describe('batch statistics graph (train-mode BN)', () => {
  /**
   * The fixtures' training reference ran one train-mode forward in torch (momentum 0.1), so for every BN
   * batch_mean = (updated - 0.9 old) / 0.1 and unbiased batch_var likewise, and the train-mode logits are
   * stored too. Our statistics graph must reproduce all of them.
   */
  async function checkAgainstTorch(onnxFile: string, gradJson: string): Promise<void> {
    const grad = JSON.parse(fs.readFileSync(gradJson, 'utf8'));
    const bin = path.join(path.dirname(gradJson), grad.bin.file);
    const input = readArray(bin, grad.bin.arrays.input);
    const model = loadModel(onnxFile);
    const old = new Map(
      findBatchNormLayers(model, onnxFile).flatMap((l) => [
        [l.runningMean.name, l.runningMean.initializer!.data as Float32Array],
        [l.runningVar.name, l.runningVar.initializer!.data as Float32Array],
      ]),
    );
    const outputs = buildBatchNormStatsGraph(model, onnxFile);
    const session = await ort.InferenceSession.create(serializeModel(model));
    const results = await session.run({
      input: new ort.Tensor('float32', input, grad.bin.arrays.input.shape),
    });
    const trainLogits = readArray(bin, grad.bin.arrays.trainLogits);
    assert.ok(
      maxAbsDiff(results[session.outputNames[0]!]!.data as Float32Array, trainLogits) < 2e-4,
      'train-mode logits',
    );
    for (const o of outputs) {
      const [n, , length] = Array.from(results[o.shape]!.data as BigInt64Array, Number) as number[];
      const count = n! * length!;
      const check = (name: string, measured: Float32Array, correction: number) => {
        const updated = readArray(bin, grad.updatedRunningStats[name]);
        const before = old.get(name)!;
        const expected = updated.map((u, c) => (u - 0.9 * before[c]!) / 0.1);
        const got = measured.map((v) => v * correction);
        for (let c = 0; c < got.length; c++) {
          assert.ok(
            Math.abs(got[c]! - expected[c]!) <= 2e-4 * (1 + Math.abs(expected[c]!)),
            `${name}[${c}]: ${got[c]} vs ${expected[c]}`,
          );
        }
      };
      check(o.layer.runningMean.name, results[o.mean]!.data as Float32Array, 1);
      check(o.layer.runningVar.name, results[o.variance]!.data as Float32Array, count / (count - 1));
    }
    await session.release();
  }

  for (const name of FIXTURE_MODELS) {
    it(`${name}: batch statistics and logits equal torch's train-mode forward`, () =>
      checkAgainstTorch(fixture(`${name}.onnx`), fixture(`${name}.grad.json`)));
  }
  it('shared ResNet-20: the same', needsShared('models/resnet20-cifar10.onnx'), () =>
    checkAgainstTorch(sharedModel('resnet20-cifar10.onnx'), fixture('resnet20.grad.json')),
  );

  it('refuses a model whose BN was folded away', () => {
    const model = loadModel(fixture('resnet_a-bnfolded.onnx'));
    assert.throws(
      () => findBatchNormLayers(model, 'resnet_a-bnfolded.onnx'),
      /resnet_a-bnfolded\.onnx: has no BatchNormalization nodes/,
    );
  });
});

describe('recalibration', () => {
  it('averages per-batch means and unbiased variances (checked on the first BN against a convolution done here)', async () => {
    const root = tmpDir('adapruner-recal-');
    const random = mulberry32(5);
    const images: Uint8Array[] = [];
    for (let i = 0; i < 8; i++) {
      const cls = `c${i % 2}`;
      fs.mkdirSync(path.join(root, cls), { recursive: true });
      const pixels = Uint8Array.from({ length: 32 * 32 * 3 }, () => Math.floor(random() * 256));
      await sharp(pixels, { raw: { width: 32, height: 32, channels: 3 } })
        .png()
        .toFile(path.join(root, cls, `${i}.png`));
    }
    const data = await openDataset(root);
    for (let i = 0; i < 8; i++) {
      const { data: raw } = await sharp(data.describe(i)).raw().toBuffer({ resolveWithObject: true });
      images.push(new Uint8Array(raw));
    }
    const spec: PreprocessSpec = {
      channels: 3,
      channelOrder: 'rgb',
      scale: 255,
      mean: [0.5, 0.4, 0.3],
      std: [0.2, 0.25, 0.3],
    };
    const model = loadModel(fixture('resnet_a.onnx'));
    const weight = model.graph.initializers.find((v) => v.name === 'conv1.weight')!.initializer!
      .data as Float32Array;
    const result = await recalibrateBatchNorm(model, data, {
      spec,
      batches: 2,
      batchSize: 4,
      seed: 11,
      augment: false,
    });
    assert.deepEqual(
      [result.layers, result.images, result.batches],
      [findBatchNormLayers(model, '').length, 8, 2],
    );

    // Expected: the conv1 output (3x3, pad 1, no bias) of each batch of 4, in the order the seed shuffles.
    const order = shuffledIndices(8, 11);
    const sumMean = new Float64Array(16);
    const sumVar = new Float64Array(16);
    for (const batch of [order.subarray(0, 4), order.subarray(4, 8)]) {
      const values: number[][] = Array.from({ length: 16 }, () => []);
      for (const index of batch) {
        const x = (c: number, y: number, xx: number) =>
          y < 0 || y > 31 || xx < 0 || xx > 31
            ? 0
            : Math.fround(
                Math.fround(
                  Math.fround(images[index]![(y * 32 + xx) * 3 + c]! / 255) - Math.fround(spec.mean[c]!),
                ) / Math.fround(spec.std[c]!),
              );
        for (let o = 0; o < 16; o++)
          for (let y = 0; y < 32; y++)
            for (let xx = 0; xx < 32; xx++) {
              let acc = 0;
              for (let c = 0; c < 3; c++)
                for (let ky = 0; ky < 3; ky++)
                  for (let kx = 0; kx < 3; kx++)
                    acc += weight[((o * 3 + c) * 3 + ky) * 3 + kx]! * x(c, y + ky - 1, xx + kx - 1);
              values[o]!.push(acc);
            }
      }
      values.forEach((v, o) => {
        const mean = v.reduce((a, b) => a + b, 0) / v.length;
        sumMean[o] += mean;
        sumVar[o] += v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1);
      });
    }
    const bn1 = findBatchNormLayers(model, '')[0]!;
    const mean = bn1.runningMean.initializer!.data as Float32Array;
    const variance = bn1.runningVar.initializer!.data as Float32Array;
    for (let o = 0; o < 16; o++) {
      // Tight enough to tell the unbiased variance from the biased one (a factor 4096/4095 here).
      assert.ok(Math.abs(mean[o]! - sumMean[o]! / 2) < 1e-6, `mean[${o}]`);
      assert.ok(
        Math.abs(variance[o]! / (sumVar[o]! / 2) - 1) < 1e-5,
        `var[${o}]: ${variance[o]} vs ${sumVar[o]! / 2}`,
      );
    }
    // The model still loads and runs, with the same structure.
    const reloaded = decodeModel(serializeModel(model));
    assert.equal(reloaded.graph.nodes.length, loadModel(fixture('resnet_a.onnx')).graph.nodes.length);
  });
});

describe('evaluate and benchmark', () => {
  it('evaluate counts top-1/top-5 exactly as an argmax over the session output does', async () => {
    const root = tmpDir('adapruner-eval-');
    const random = mulberry32(8);
    for (let i = 0; i < 12; i++) {
      const cls = `class${i % 10}`;
      fs.mkdirSync(path.join(root, cls), { recursive: true });
      const pixels = Uint8Array.from({ length: 28 * 28 }, () => Math.floor(random() * 256));
      await sharp(pixels, { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toFile(path.join(root, cls, `${i}.png`));
    }
    const data = await openDataset(root);
    const spec: PreprocessSpec = {
      channels: 1,
      channelOrder: 'rgb',
      scale: 255,
      mean: [0.286],
      std: [0.353],
    };
    const session = await createSession(fixture('fmnist_cnn.onnx'));
    const result = await evaluate(session, data, { spec, batchSize: 5 });
    let top1 = 0;
    let top5 = 0;
    let loss = 0;
    for await (const b of batches(data, { spec, batchSize: 12 })) {
      const scores = await session.run(b.images, b.shape);
      for (let s = 0; s < b.n; s++) {
        const row = Array.from(scores.subarray(s * 10, s * 10 + 10));
        const order = row
          .map((v, k) => [v, k] as const)
          .sort((p, q) => q[0] - p[0] || p[1] - q[1])
          .map((p) => p[1]);
        if (order[0] === b.labels[s]) top1++;
        if (order.slice(0, 5).includes(b.labels[s]!)) top5++;
        // Cross-entropy straight from the definition, in float64 without the max shift.
        loss -= Math.log(Math.exp(row[b.labels[s]!]!) / row.reduce((a, v) => a + Math.exp(v), 0));
      }
    }
    assert.deepEqual([result.n, result.correctTop1, result.correctTop5], [12, top1, top5]);
    assert.equal(result.top1, top1 / 12);
    assert.ok(Math.abs(result.loss - loss / 12) < 1e-9, `loss ${result.loss} vs ${loss / 12}`);
    assert.ok(result.imagesPerSecond > 0);
    await session.release();
  });

  it('benchmark alternates models and reports median, p90 and throughput', async () => {
    const a = await createSession(fixture('resnet_a.onnx'));
    const b = await createSession(fixture('resnet_a-bnfolded.onnx'));
    const [sa, sb] = await benchmark([a, b], { batch: 2, warmup: 1, runs: 6 });
    for (const s of [sa!, sb!]) {
      assert.equal(s.runs, 6);
      assert.deepEqual(s.inputShape, [2, 3, 32, 32]);
      assert.ok(s.minMs <= s.medianMs && s.medianMs <= s.p90Ms, JSON.stringify(s));
      assert.ok(Math.abs(s.imagesPerSecond - 2000 / s.medianMs) < 1e-9);
    }
    await Promise.all([a.release(), b.release()]);
  });
});
