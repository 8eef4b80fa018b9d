import assert from 'node:assert/strict';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { loadModel, serializeModel, type Model } from '../src/ir/index.js';
import { stateFeeds } from '../src/train/loop.js';
import { buildStepGraph, type StepGraph } from '../src/train/step-graph.js';
import { fixture } from './helpers.js';

/** The same model declared at opset 18, where ReduceMean takes its axes as an input instead of an attribute. */
function atOpset18(model: Model): Model {
  const copy = model.clone();
  copy.opsetImports.find((o) => o.domain === '' || o.domain === 'ai.onnx')!.version = 18;
  return copy;
}

async function runStep(step: StepGraph, model: Model, seed: number): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(serializeModel(step.model), { intraOpNumThreads: 1 });
  try {
    const size = step.imageShape.reduce((a, b) => a * b, 1);
    const images = Float32Array.from({ length: size }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.5);
    const feeds: Record<string, ort.Tensor> = {
      [step.inputs.images]: new ort.Tensor('float32', images, step.imageShape),
      [step.inputs.labels]: new ort.Tensor(
        'int64',
        BigInt64Array.from({ length: step.batchSize }, (_, i) => BigInt(i % step.numClasses)),
        [step.batchSize],
      ),
      [step.inputs.lr]: new ort.Tensor('float32', new Float32Array([0.05]), []),
    };
    const init = new Map(model.graph.initializers.map((v) => [v.name, v.initializer!.data as Float32Array]));
    Object.assign(
      feeds,
      stateFeeds(step, (name) => init.get(name)),
    );
    const out = await session.run(feeds);
    return Object.fromEntries(
      Object.entries(out).map(([k, t]) => [k, Float32Array.from(t.data as ArrayLike<number>, Number)]),
    );
  } finally {
    await session.release();
  }
}

for (const name of ['resnet_a', 'mobilenetv2']) {
  test(`${name}: the training step of an opset-18 model runs and equals the opset-13 step`, async () => {
    const model = loadModel(fixture(`${name}.onnx`));
    assert.ok(model.opset < 18, 'the fixture is exported below opset 18');
    const options = { batchSize: 4, exposeGradients: true, sgd: { momentum: 0.9 } };
    const base = await buildStepGraph(model, options);
    const modern = await buildStepGraph(atOpset18(model), options);
    assert.equal(modern.model.opset, 18);
    const reduceMeans = modern.model.graph.nodes.filter((n) => n.opType === 'ReduceMean');
    assert.ok(reduceMeans.length > 0, 'train-mode BN is expanded with ReduceMean');
    for (const n of reduceMeans) {
      assert.equal(n.attr('axes'), undefined, `${n.name}: no axes attribute at opset 18`);
      assert.equal(n.inputs.length, 2, `${n.name}: axes as the second input`);
    }
    const [a, b] = [await runStep(base, model, 1), await runStep(modern, atOpset18(model), 1)];
    assert.deepEqual(Object.keys(b).sort(), Object.keys(a).sort());
    for (const key of Object.keys(a)) {
      const [x, y] = [a[key]!, b[key]!];
      let scale = 1e-12;
      let diff = 0;
      for (let i = 0; i < x.length; i++) {
        scale = Math.max(scale, Math.abs(x[i]!));
        diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
      }
      assert.ok(diff / scale <= 1e-6, `${key}: relative difference ${diff / scale}`);
    }
  });
}
