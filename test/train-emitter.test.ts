import assert from 'node:assert/strict';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { mulberry32 } from '../src/data/prng.js';
import { DataType, Graph, Model, Value, serializeModel, tensorType } from '../src/ir/index.js';
import { Emitter } from '../src/train/emitter.js';

const SHAPE = [3, 4, 5, 6];

/** sum (or mean) of x [N, C, H, W] over every axis but C, in float64. */
function perChannel(x: Float32Array, mean: boolean): number[] {
  const [n, c, h, w] = SHAPE as [number, number, number, number];
  const out = new Array<number>(c).fill(0);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < c; k++) for (let t = 0; t < h * w; t++) out[k]! += x[(i * c + k) * h * w + t]!;
  return mean ? out.map((v) => v / (n * h * w)) : out;
}

async function run(build: (e: Emitter, x: Value) => Value[], opset: number, x: Float32Array) {
  const g = new Graph();
  const input = new Value('x', tensorType(DataType.FLOAT, SHAPE));
  g.inputs.push(input);
  const e = new Emitter(g, 'r/', { opset });
  const outs = build(e, input);
  outs.forEach((v, i) => {
    v.name = `y${i}`;
    v.type = tensorType(DataType.FLOAT, undefined);
    g.outputs.push(v);
  });
  const model = new Model(g);
  model.opsetImports = [{ domain: '', version: opset }];
  const session = await ort.InferenceSession.create(serializeModel(model));
  const result = await session.run({ x: new ort.Tensor('float32', x, SHAPE) });
  await session.release();
  return { graph: g, outputs: outs.map((_, i) => result[`y${i}`]!) };
}

for (const opset of [17, 18]) {
  test(`per-channel reductions over [0, 2, 3] are two nodes (spatial axes, then batch) and equal the direct sum and mean (opset ${opset})`, async () => {
    const random = mulberry32(5);
    const x = Float32Array.from({ length: SHAPE.reduce((a, b) => a * b, 1) }, () => random() * 2 - 1);
    const { graph, outputs } = await run(
      (e, v) => [
        e.reduceSum(v, [0, 2, 3], true),
        e.reduceMean(v, [0, 2, 3], false),
        e.reduceSum(v, [0, 1], true),
      ],
      opset,
      x,
    );
    const reductions = graph.nodes.filter((n) => n.opType.startsWith('Reduce'));
    // [0, 2, 3] twice split in two; the contiguous [0, 1] stays one node.
    assert.equal(reductions.length, 5);
    const axesOf = (i: number) =>
      opset >= 18 || reductions[i]!.opType === 'ReduceSum'
        ? Array.from(reductions[i]!.input(1).initializer!.data as BigInt64Array, Number)
        : reductions[i]!.attrInts('axes');
    assert.deepEqual([0, 1, 2, 3, 4].map(axesOf), [[2, 3], [0], [2, 3], [0], [0, 1]]);

    assert.deepEqual(outputs[0]!.dims, [1, SHAPE[1], 1, 1]);
    assert.deepEqual(outputs[1]!.dims, [SHAPE[1]]);
    const sums = perChannel(x, false);
    const means = perChannel(x, true);
    (outputs[0]!.data as Float32Array).forEach((v, k) =>
      assert.ok(Math.abs(v - sums[k]!) < 1e-5, `sum ${k}`),
    );
    (outputs[1]!.data as Float32Array).forEach((v, k) =>
      assert.ok(Math.abs(v - means[k]!) < 1e-6, `mean ${k}`),
    );
  });
}
