import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { loadModel, serializeModel } from '../src/ir/index.js';
import { buildStepGraph } from '../src/train/step-graph.js';
import { FIXTURE_MODELS, fixture, needsShared, relativeError, sharedModel } from './helpers.js';

interface ArrayRef {
  byteOffset: number;
  byteLength: number;
  shape: number[];
}

async function checkAgainstTorch(name: string, modelPath: string): Promise<void> {
  const ref = JSON.parse(fs.readFileSync(fixture(`${name}.grad.json`), 'utf8'));
  const bin = fs.readFileSync(fixture(ref.bin.file));
  const array = (r: ArrayRef): Float32Array =>
    new Float32Array(
      bin.buffer.slice(bin.byteOffset + r.byteOffset, bin.byteOffset + r.byteOffset + r.byteLength),
    );
  const model = loadModel(modelPath);
  const step = await buildStepGraph(model, {
    batchSize: ref.batch,
    exposeGradients: true,
    sgd: { momentum: 0.9, weightDecay: 5e-4 },
  });
  const session = await ort.InferenceSession.create(serializeModel(step.model), { intraOpNumThreads: 1 });
  const initializers = new Map(
    model.graph.initializers.map((v) => [v.name, v.initializer!.data as Float32Array]),
  );
  const feeds: Record<string, ort.Tensor> = {
    [step.inputs.images]: new ort.Tensor('float32', array(ref.bin.arrays.input), step.imageShape),
    [step.inputs.labels]: new ort.Tensor('int64', BigInt64Array.from(ref.labels.map(BigInt)), [ref.batch]),
    [step.inputs.lr]: new ort.Tensor('float32', new Float32Array([0.1]), []),
  };
  for (const p of step.params) {
    feeds[p.name] = new ort.Tensor('float32', initializers.get(p.name)!, p.shape);
    feeds[p.momentum!.input] = new ort.Tensor(
      'float32',
      new Float32Array(initializers.get(p.name)!.length),
      p.shape,
    );
  }
  for (const r of step.runningStats)
    feeds[r.name] = new ort.Tensor('float32', initializers.get(r.name)!, r.shape);
  const out = await session.run(feeds);
  await session.release();

  const loss = (out[step.outputs.loss]!.data as Float32Array)[0]!;
  assert.ok(
    Math.abs(loss - ref.loss.value) <= 1e-5 * Math.abs(ref.loss.value),
    `loss ${loss} vs ${ref.loss.value}`,
  );
  assert.deepEqual(
    step.params.map((p) => p.name).sort(),
    Object.keys(ref.grads).sort(),
    'trained parameters = torch parameters',
  );
  assert.deepEqual(step.runningStats.map((r) => r.name).sort(), Object.keys(ref.updatedRunningStats).sort());
  const zeroScale: number = ref.maxAbsDiffGradsFloat32VsFloat64;
  const worst = { grad: 0, param: 0, stat: 0 };
  for (const p of step.params) {
    const eg = relativeError(out[p.grad!]!.data as Float32Array, array(ref.grads[p.name]), zeroScale);
    const ep = relativeError(
      out[p.updated]!.data as Float32Array,
      array(ref.updatedParams[p.name]),
      zeroScale,
    );
    assert.ok(eg <= 1e-4, `${name}: gradient of ${p.name}: relative error ${eg}`);
    assert.ok(ep <= 1e-4, `${name}: updated ${p.name}: relative error ${ep}`);
    worst.grad = Math.max(worst.grad, eg);
    worst.param = Math.max(worst.param, ep);
  }
  for (const r of step.runningStats) {
    const er = relativeError(
      out[r.updated]!.data as Float32Array,
      array(ref.updatedRunningStats[r.name]),
      zeroScale,
    );
    assert.ok(er <= 1e-4, `${name}: running stat ${r.name}: relative error ${er}`);
    worst.stat = Math.max(worst.stat, er);
  }
  console.log(
    `# ${name}: max relative error: gradients ${worst.grad.toExponential(2)}, updated params ${worst.param.toExponential(2)}, running stats ${worst.stat.toExponential(2)}`,
  );
}

for (const name of FIXTURE_MODELS) {
  test(`step graph matches torch's loss, gradients, SGD step and BN statistics: ${name}`, () =>
    checkAgainstTorch(name, fixture(`${name}.onnx`)));
}

test('step graph matches torch: shared ResNet-20', needsShared('models/resnet20-cifar10.onnx'), () =>
  checkAgainstTorch('resnet20', sharedModel('resnet20-cifar10.onnx')),
);
