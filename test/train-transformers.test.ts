import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { loadModel, serializeModel } from '../src/ir/index.js';
import { buildStepGraph } from '../src/train/step-graph.js';
import { fixture } from './helpers.js';

/**
 * Autodiff on transformers: for each fixture of fixtures/transformers/ (torchvision VisionTransformer and
 * SwinTransformer, the BERT-like nn.TransformerEncoder with int64 token inputs, at opset 14 with LayerNorm
 * decomposed and at 17 with the op, and with a padding mask), the step graph's mean cross-entropy and the
 * gradient of every trained initializer must equal torch's float64 reference (fixtures/make_transformer_grads.py).
 * The initializers are the exported model's own: `onnx::MatMul_NNN` is a Linear weight transposed, Swin's
 * `onnx::Add_NNN` its gathered relative position bias; the reference says which leaf each one is.
 */
interface ArrayRef {
  byteOffset: number;
  byteLength: number;
  shape: number[];
  dtype?: 'int64';
}

interface GradRef {
  name: string;
  labels: number[];
  lossValue: number;
  inputs: Record<string, ArrayRef>;
  torchFloat32RelativeError: Record<string, number>;
  grads: Record<string, ArrayRef>;
  onnx: Record<string, { initializers: Record<string, { leaf: string; transposed: boolean }> }>;
}

function load(name: string): { ref: GradRef; bin: Buffer } {
  const ref = JSON.parse(fs.readFileSync(fixture(`transformers/${name}.grad.json`), 'utf8')) as GradRef;
  return { ref, bin: fs.readFileSync(fixture(`transformers/${name}.grad.bin`)) };
}

/** A copy of one array's bytes (aligned for its typed array). */
function slice(bin: Buffer, r: ArrayRef): ArrayBuffer {
  return Uint8Array.from(bin.subarray(r.byteOffset, r.byteOffset + r.byteLength)).buffer;
}

/** The reference gradient of an initializer: its leaf's, transposed back for a [in, out] MatMul weight. */
function reference(bin: Buffer, r: ArrayRef, transposed: boolean): Float32Array {
  const g = new Float32Array(slice(bin, r));
  if (!transposed) return g;
  const [rows, cols] = r.shape as [number, number];
  const t = new Float32Array(g.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = g[i * cols + j]!;
  return t;
}

interface Errors {
  /** max over tensors of max |ours - ref|. */
  abs: number;
  /** max over tensors of max |ours - ref| / max |ref|. */
  rel: number;
  worst: string;
}

async function check(name: string, file: string): Promise<Errors> {
  const { ref, bin } = load(name);
  const map = ref.onnx[file]!.initializers;
  const model = loadModel(fixture(`transformers/${file}`));
  const B = ref.labels.length;
  const inputShapes = Object.fromEntries(Object.entries(ref.inputs).map(([k, r]) => [k, r.shape]));
  const step = await buildStepGraph(model, {
    batchSize: B,
    inputShapes,
    multipleInputs: true,
    exposeGradients: true,
    trainable: (n) => n in map,
    sgd: { momentum: 0, weightDecay: 0 },
  });
  assert.deepEqual(
    step.dataInputs.map((d) => d.name),
    Object.keys(ref.inputs),
  );
  const feeds: Record<string, ort.Tensor> = {
    [step.inputs.labels]: new ort.Tensor('int64', BigInt64Array.from(ref.labels.map(BigInt)), [B]),
    [step.inputs.lr]: new ort.Tensor('float32', new Float32Array([0.1]), []),
  };
  for (const [k, r] of Object.entries(ref.inputs))
    feeds[k] =
      r.dtype === 'int64'
        ? new ort.Tensor('int64', new BigInt64Array(slice(bin, r)), r.shape)
        : new ort.Tensor('float32', new Float32Array(slice(bin, r)), r.shape);
  const init = new Map(model.graph.initializers.map((v) => [v.name, v.initializer!]));
  for (const p of step.params)
    feeds[p.name] = new ort.Tensor('float32', init.get(p.name)!.data as Float32Array, p.shape);
  const session = await ort.InferenceSession.create(serializeModel(step.model), { intraOpNumThreads: 1 });
  const out = await session.run(feeds);
  await session.release();
  const loss = (out[step.outputs.loss]!.data as Float32Array)[0]!;
  assert.ok(Math.abs(loss - ref.lossValue) <= 1e-5, `${file}: loss ${loss} vs ${ref.lossValue}`);
  assert.deepEqual(step.params.map((p) => p.name).sort(), Object.keys(map).sort());
  const errors: Errors = { abs: 0, rel: 0, worst: '' };
  for (const p of step.params) {
    const { leaf, transposed } = map[p.name]!;
    const want = reference(bin, ref.grads[leaf]!, transposed);
    const ours = out[p.grad!]!.data as Float32Array;
    assert.equal(ours.length, want.length);
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < want.length; i++) {
      diff = Math.max(diff, Math.abs(ours[i]! - want[i]!));
      scale = Math.max(scale, Math.abs(want[i]!));
    }
    const rel = diff / Math.max(scale, 1e-30);
    if (rel > errors.rel) errors.worst = `${p.name} (${leaf})`;
    errors.abs = Math.max(errors.abs, diff);
    errors.rel = Math.max(errors.rel, rel);
  }
  return errors;
}

const CASES: [string, string][] = [
  ['vit', 'vit.onnx'],
  ['vit', 'vit-opset17.onnx'],
  ['swin', 'swin.onnx'],
  ['swin', 'swin-opset17.onnx'],
  ['bert', 'bert.onnx'],
  ['bert', 'bert-opset17.onnx'],
  ['bert_mask', 'bert_mask.onnx'],
];

test('a text model needs multipleInputs: the training loop and distillation feed images only', async () => {
  await assert.rejects(
    buildStepGraph(loadModel(fixture('transformers/bert.onnx')), { batchSize: 2 }),
    /fine-tuning needs a model with one input \(found 2\)/,
  );
});

for (const [name, file] of CASES) {
  test(`the step graph's gradients equal torch's on ${file}`, async () => {
    const e = await check(name, file);
    console.log(
      `# ${file}: max |grad - ref| ${e.abs.toExponential(2)}, max relative ${e.rel.toExponential(2)} (${e.worst})`,
    );
    assert.ok(e.abs <= 1e-4, `${file}: max |grad - ref| ${e.abs}`);
    assert.ok(e.rel <= 1e-4, `${file}: relative error ${e.rel} at ${e.worst}`);
  });
}

test('fine-tuning trains what torch trains: every parameter of each transformer fixture by default', async () => {
  // The decomposed LayerNorm's scale and shift (opset 14), ViT's class token and position embedding, Swin's
  // relative position bias, the embedding tables, and the Linear weights as transposed MatMul initializers.
  for (const [name, file] of CASES) {
    const { ref } = load(name);
    const inputShapes = Object.fromEntries(Object.entries(ref.inputs).map(([k, r]) => [k, r.shape]));
    const model = loadModel(fixture(`transformers/${file}`));
    const step = await buildStepGraph(model, {
      batchSize: 2,
      inputShapes,
      multipleInputs: true,
      blockedConvs: false,
    });
    const want = Object.keys(ref.onnx[file]!.initializers).sort();
    assert.deepEqual(step.params.map((p) => p.name).sort(), want, file);
  }
});
