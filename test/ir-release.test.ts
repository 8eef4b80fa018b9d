import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import {
  loadModel,
  releaseLoadedFile,
  serializeModel,
  serializeModelCompact,
  type Model,
  type Tensor,
} from '../src/ir/index.js';
import { fixture } from './helpers.js';

const tensors = (m: Model): Tensor[] => m.graph.initializers.map((v) => v.initializer!);

test('a model released from its loaded file keeps its data and bytes, and clones with it', () => {
  const model = loadModel(fixture('resnet_a.onnx'));
  const before = serializeModel(model);
  const data = tensors(model).map((t) => Array.from(t.data as ArrayLike<number | bigint>));
  const copy = model.clone();
  tensors(copy)[0]!.setData(new Float32Array(tensors(copy)[0]!.size).fill(0.5));
  assert.ok(releaseLoadedFile(model, Infinity) > 0);
  assert.equal(model.loadedFrom!.held, false);
  assert.ok(tensors(model).some((t) => t.isDetached));
  assert.deepEqual(serializeModel(model), before);
  tensors(model).forEach((t, i) =>
    assert.deepEqual(Array.from(t.data as ArrayLike<number | bigint>), data[i]),
  );
  // The clone's untouched tensors were detached too; its changed one is unaffected.
  assert.equal(tensors(copy)[0]!.isDetached, false);
  assert.equal((tensors(copy)[0]!.data as Float32Array)[0], 0.5);
  assert.deepEqual(
    tensors(copy)
      .slice(1)
      .map((t) => t.rawBytes()),
    tensors(model)
      .slice(1)
      .map((t) => t.rawBytes()),
  );
  // Nothing views the released buffer any more: chunks read back the same elements.
  for (const t of tensors(model)) {
    const parts: number[] = [];
    for (const c of t.chunks(7)) parts.push(...Array.from(c as ArrayLike<number | bigint>, Number));
    assert.deepEqual(parts, Array.from(t.data as ArrayLike<number | bigint>, Number));
  }
});

test('a released model whose file changed since it was loaded says so in one line', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-release-'));
  try {
    const file = path.join(dir, 'm.onnx');
    fs.copyFileSync(fixture('resnet_a.onnx'), file);
    const model = loadModel(file);
    releaseLoadedFile(model, Infinity);
    fs.writeFileSync(file, fs.readFileSync(file));
    // A write in place changes ctime even with the same bytes: the file is not trusted to hold the same data.
    assert.throws(() => serializeModel(model), /changed after it was loaded/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('serializeModelCompact with rebase points the weights at the returned bytes, which re-encode the same', () => {
  const model = loadModel(fixture('vgg.onnx'));
  const copy = model.clone();
  const t = tensors(copy).find((x) => x.byteLength >= 4096)!;
  t.setData((t.data as Float32Array).map((x) => x * 2));
  const plain = serializeModel(copy);
  const bytes = serializeModelCompact(copy, { rebase: true });
  assert.deepEqual(bytes, plain);
  assert.equal(t.rawBytes().buffer, bytes.buffer);
  assert.deepEqual(serializeModel(copy), plain);
  // The original is untouched by its clone's rebase.
  assert.notEqual(
    tensors(model)
      .find((x) => x.name === t.name)!
      .rawBytes().buffer,
    bytes.buffer,
  );
});
