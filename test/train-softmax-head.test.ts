import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { openDataset } from '../src/data/open.js';
import { readSpecFile } from '../src/data/preprocess.js';
import { intAttr } from '../src/ir/attribute.js';
import { Node, Value } from '../src/ir/graph.js';
import { loadModel, serializeModel } from '../src/ir/index.js';
import type { Model } from '../src/ir/model.js';
import { evaluate } from '../src/runtime/evaluate.js';
import { finetune, type FinetuneOptions } from '../src/train/loop.js';
import { FIXTURES } from './helpers.js';

const EXAMPLE = path.join(FIXTURES, 'example');

/** The trained example CNN with a final Softmax appended, as paddle2onnx and many exporters emit it. */
function withSoftmax(): Model {
  const m = loadModel(path.join(EXAMPLE, 'fmnist-cnn.onnx'));
  const logits = m.graph.outputs[0]!;
  const probs = new Value('probs', logits.type);
  const node = new Node('Softmax', [logits], [probs], 'final_softmax');
  node.attributes.set('axis', intAttr(1));
  m.graph.addNode(node);
  m.graph.outputs[0] = probs;
  return m;
}

function weights(m: Model): Map<string, Float32Array> {
  return new Map(
    m.graph.initializers
      .filter((v) => v.initializer!.dims.length >= 1)
      .map((v) => [v.name, Float32Array.from(v.initializer!.data as Float32Array)]),
  );
}

test('a classifier ending in Softmax fine-tunes as its logits do: cross-entropy on the logits, distillation too', async () => {
  const train = await openDataset(path.join(EXAMPLE, 'fashion-mnist'), { split: 'train' });
  const spec = readSpecFile(path.join(EXAMPLE, 'fmnist-cnn.preprocess.json'));
  const options = (teacher?: Model): FinetuneOptions => ({
    epochs: 1,
    batchSize: 16,
    lr: 0.05,
    limit: 64,
    spec,
    seed: 3,
    threads: 1,
    augment: 'none',
    schedule: { kind: 'constant' },
    ...(teacher && { teacher: { model: teacher, temperature: 4, alpha: 0.5 } }),
  });
  for (const distil of [false, true]) {
    const plain = loadModel(path.join(EXAMPLE, 'fmnist-cnn.onnx'));
    const softmax = withSoftmax();
    const a = await finetune(
      plain,
      train,
      options(distil ? loadModel(path.join(EXAMPLE, 'fmnist-cnn.onnx')) : undefined),
    );
    const b = await finetune(softmax, train, options(distil ? withSoftmax() : undefined));
    assert.equal(b.model.graph.outputs[0]!.producer?.opType, 'Softmax', 'the Softmax stays in the model');
    const [wa, wb] = [weights(a.model), weights(b.model)];
    assert.equal(wb.size, wa.size);
    for (const [name, x] of wa) {
      const y = wb.get(name)!;
      let worst = 0;
      for (let i = 0; i < x.length; i++)
        worst = Math.max(worst, Math.abs(x[i]! - y[i]!) / (1e-3 + Math.abs(x[i]!)));
      assert.ok(worst < 1e-3, `${distil ? 'distilled: ' : ''}${name} differs by ${worst}`);
    }
    assert.ok(
      Math.abs(a.history[0]!.loss - b.history[0]!.loss) < 1e-4,
      `${a.history[0]!.loss} vs ${b.history[0]!.loss}`,
    );
  }
});

test("evaluate's loss of a Softmax head is -log p of the label, as its logits' cross-entropy", async () => {
  const data = await openDataset(path.join(EXAMPLE, 'fashion-mnist'), { split: 'test' });
  const spec = readSpecFile(path.join(EXAMPLE, 'fmnist-cnn.preprocess.json'));
  const indices = Int32Array.from({ length: 200 }, (_, i) => i);
  const run = (m: Model) => evaluate(serializeModel(m), data, { spec, indices, runtime: { threads: 1 } });
  const [a, b] = [await run(loadModel(path.join(EXAMPLE, 'fmnist-cnn.onnx'))), await run(withSoftmax())];
  assert.equal(b.top1, a.top1);
  assert.ok(Math.abs(a.loss - b.loss) < 1e-4, `${a.loss} vs ${b.loss}`);
});
