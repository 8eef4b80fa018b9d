import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import {
  DataType,
  Node,
  Tensor,
  Value,
  loadModel,
  serializeModel,
  tensorType,
  type Model,
} from '../src/ir/index.js';
import { intAttr } from '../src/ir/attribute.js';
import { gradRules } from '../src/train/grad-rules/index.js';
import { buildStepGraph } from '../src/train/step-graph.js';
import { fixture, relativeError } from './helpers.js';

/**
 * The backward rules of the ops detectors, segmenters and transformers use (Resize/Upsample, Split/Concat/Slice,
 * SiLU, Softmax/LogSoftmax on any axis and at opset 11, SPPF's overlapping MaxPool, ConvTranspose,
 * HardSwish/HardSigmoid, LayerNormalization and its decomposition, Gelu/Erf, attention's MatMuls, Gather,
 * Where/Expand) against torch: each case of fixtures/grad_ops/grad_ops.json (fixtures/make_grad_ops.py) is a tiny
 * exported network with logits [N, 10]; the step graph's mean cross-entropy and every parameter gradient must
 * equal torch's float64 reference. `yolo_det` is the whole detector fixture with BN in training mode, its output
 * projected to 10 logits by a fixed matrix.
 */
interface ArrayRef {
  byteOffset: number;
  byteLength: number;
  shape: number[];
}

interface Case {
  name: string;
  onnx: string;
  batch: number;
  labels: number[];
  ops: Record<string, number>;
  loss: number;
  maxAbsDiffGradsFloat32VsFloat64: number;
  torchFloat32RelativeError: Record<string, number>;
  input: ArrayRef;
  grads: Record<string, ArrayRef>;
}

const REF = JSON.parse(fs.readFileSync(fixture('grad_ops/grad_ops.json'), 'utf8')) as {
  bin: { file: string };
  cases: Case[];
};
const BIN = fs.readFileSync(fixture(`grad_ops/${REF.bin.file}`));

function array(r: ArrayRef): Float32Array {
  return new Float32Array(
    BIN.buffer.slice(BIN.byteOffset + r.byteOffset, BIN.byteOffset + r.byteOffset + r.byteLength),
  );
}

/** The fixed head of the full-model check, as make_grad_ops.py's projection(d, k). */
function projection(d: number, k: number): Float32Array {
  const p = new Float32Array(d * k);
  for (let i = 0; i < d; i++)
    for (let j = 0; j < k; j++) p[i * k + j] = (Math.sin(0.37 * i + 1.91 * j + 0.5) / Math.sqrt(d)) * 2 ** -6;
  return p;
}

/** output0 [N, C, A] -> Flatten -> MatMul(P) -> logits [N, 10]. */
function withProjectionHead(model: Model, dims: number[]): Model {
  const g = model.graph;
  const out = g.outputs[0]!;
  const d = dims.slice(1).reduce((a, b) => a * b, 1);
  const flat = new Value(g.uniqueName('head_flat'));
  g.addNode(new Node('Flatten', [out], [flat], g.uniqueName('head_flatten')));
  flat.producer!.attributes.set('axis', intAttr(1));
  const p = g.addInitializer(
    new Value(g.uniqueName('head_projection')),
    Tensor.fromArray(DataType.FLOAT, [d, 10], projection(d, 10)),
  );
  const logits = new Value(g.uniqueName('logits'), tensorType(DataType.FLOAT, [dims[0]!, 10]));
  g.addNode(new Node('MatMul', [flat, p], [logits], g.uniqueName('head_matmul')));
  g.outputs[0] = logits;
  return model;
}

async function check(c: Case): Promise<number> {
  let model = loadModel(fixture(c.onnx));
  if (c.name === 'yolo_det') model = withProjectionHead(model, [c.batch, 7, 84]);
  const step = await buildStepGraph(model, {
    batchSize: c.batch,
    exposeGradients: true,
    trainable: (name) => name in c.grads,
    sgd: { momentum: 0, weightDecay: 0 },
  });
  const init = new Map(model.graph.initializers.map((v) => [v.name, v.initializer!]));
  const feeds: Record<string, ort.Tensor> = {
    [step.inputs.images]: new ort.Tensor('float32', array(c.input), step.imageShape),
    [step.inputs.labels]: new ort.Tensor('int64', BigInt64Array.from(c.labels.map(BigInt)), [c.batch]),
    [step.inputs.lr]: new ort.Tensor('float32', new Float32Array([0.1]), []),
  };
  for (const p of [...step.params, ...step.runningStats])
    feeds[p.name] = new ort.Tensor('float32', init.get(p.name)!.data as Float32Array, p.shape);
  const session = await ort.InferenceSession.create(serializeModel(step.model), { intraOpNumThreads: 1 });
  const out = await session.run(feeds);
  await session.release();
  const loss = (out[step.outputs.loss]!.data as Float32Array)[0]!;
  assert.ok(Math.abs(loss - c.loss) <= 1e-5 * Math.abs(c.loss), `${c.name}: loss ${loss} vs ${c.loss}`);
  assert.deepEqual(step.params.map((p) => p.name).sort(), Object.keys(c.grads).sort());
  let worst = 0;
  const above: string[] = [];
  for (const p of step.params) {
    const ours = out[p.grad!]!.data as Float32Array;
    const err = relativeError(ours, array(c.grads[p.name]!), c.maxAbsDiffGradsFloat32VsFloat64);
    // 1e-4, or 10x torch's own float32 error where that is larger. The detector at batch 1 is ill-conditioned
    // in float32: torch's float32 gradient is 1e-5 to 8.5e-5 off its float64 one on 46 of its 183 tensors (its
    // CPU BN backward sums in double). This graph is within 1e-4 on all but the five of the P5 class branch
    // (model.22.cv3.2.*: BN over 2x2 positions, gradients ~1e-6 that are sums of terms ~1e3 times larger),
    // where it is 1.1-2.3e-4 (torch float32: 2.8e-5 to 8.5e-5). Every tensor of the other cases is within 1e-4.
    const bound = Math.max(1e-4, 10 * c.torchFloat32RelativeError[p.name]!);
    assert.ok(err <= bound, `${c.name}: gradient of ${p.name}: relative error ${err} (bound ${bound})`);
    if (err > 1e-4)
      above.push(
        `${p.name} ${err.toExponential(2)} (torch float32 ${c.torchFloat32RelativeError[p.name]!.toExponential(2)})`,
      );
    worst = Math.max(worst, err);
  }
  if (above.length) console.log(`# ${c.name}: above 1e-4: ${above.join(', ')}`);
  return worst;
}

for (const c of REF.cases) {
  const ops = Object.keys(c.ops).join(', ');
  test(`backward rules equal torch's gradients: ${c.name} (${ops})`, async () => {
    const worst = await check(c);
    console.log(`# ${c.name}: max relative gradient error ${worst.toExponential(2)}`);
  });
}

test('every op of the fixtures on a gradient path has a registered rule', () => {
  const needed = ['Resize', 'Upsample', 'Softmax', 'LogSoftmax', 'ConvTranspose', 'LayerNormalization'];
  for (const op of [...needed, 'Gelu', 'Erf', 'Pow', 'Sqrt', 'Gather', 'Where', 'Expand', 'Tanh'])
    assert.ok(gradRules[op], `no rule for ${op}`);
});

test('nearest upsampling by an integer factor is a ReduceSum over the factors, no MatMul', async () => {
  const model = loadModel(fixture('grad_ops/resize_nearest.onnx'));
  const names = new Set(Object.keys(REF.cases.find((c) => c.name === 'resize_nearest')!.grads));
  const step = await buildStepGraph(model, { batchSize: 2, trainable: (n) => names.has(n) });
  const backward = step.model.graph.nodes.filter((n) => n.name.startsWith('grad/'));
  // One Resize (x2) takes the Reshape + ReduceSum form; the other (6x6 -> 11x13) one MatMul per axis.
  const matrices = backward.filter(
    (n) => n.opType === 'MatMul' && n.inputs.some((v) => v?.name.includes('resize_matrix')),
  );
  assert.equal(matrices.length, 2);
});
