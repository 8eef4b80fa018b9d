import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { AttributeType, floatAttr, intAttr, intsAttr, stringAttr, tensorAttr } from '../src/ir/attribute.js';
import { DataType, ortTypeName } from '../src/ir/data-type.js';
import { Graph, Node, Value } from '../src/ir/graph.js';
import { decodeModel, loadModel } from '../src/ir/load.js';
import { Model } from '../src/ir/model.js';
import { serializeModel } from '../src/ir/save.js';
import { Tensor } from '../src/ir/tensor.js';
import { tensorType, type Dim } from '../src/ir/types.js';
import { verifyModel } from '../src/ir/verify.js';
import { analyzeShapes, inferShapes } from '../src/passes/infer-shapes.js';
import { FIXTURE_MODELS, SHARED_MODELS, fixture, needsShared, seededFloats, sharedModel } from './helpers.js';

/**
 * Runs `model` in onnxruntime (optimizations off) with every node output added to the graph outputs, so
 * the run reports the real shape (and content) of every intermediate value. `batch` replaces symbolic dims
 * of the inputs.
 */
async function runAllValues(
  model: Model,
  batch: number,
  elemTypes: Map<string, DataType>,
): Promise<Map<string, ort.Tensor>> {
  const copy = decodeModel(serializeModel(model));
  const g = copy.graph;
  const outputs = new Set(g.outputs.map((v) => v.name));
  for (const n of g.nodes)
    for (const v of n.outputs) {
      if (!v.name || outputs.has(v.name)) continue;
      const t = elemTypes.get(v.name);
      assert.ok(t, `no inferred element type for '${v.name}'`);
      v.type = tensorType(t, undefined);
      g.outputs.push(v);
      outputs.add(v.name);
    }
  const session = await ort.InferenceSession.create(serializeModel(copy), {
    graphOptimizationLevel: 'disabled',
  });
  const feeds: Record<string, ort.Tensor> = {};
  const inits = new Set(g.initializers);
  g.inputs.forEach((v, k) => {
    if (inits.has(v)) return;
    const dims = v.shape!.map((d) => (typeof d === 'number' ? d : batch));
    const size = dims.reduce((a, b) => a * b, 1);
    feeds[v.name] = new ort.Tensor(
      ortTypeName(v.elemType!) as 'float32',
      seededFloats(size, 7 + k + batch),
      dims,
    );
  });
  const result = await session.run(feeds);
  await session.release();
  return new Map(Object.entries(result));
}

/** Asserts every inferred shape matches what onnxruntime produced at batch sizes 2 and 3. */
async function assertShapesMatchRuntime(model: Model, what: string): Promise<void> {
  const analysis = analyzeShapes(model);
  const types = new Map<string, DataType>();
  for (const n of model.graph.nodes)
    for (const v of n.outputs)
      if (analysis.info.get(v)?.elemType) types.set(v.name, analysis.info.get(v)!.elemType!);
  let compared = 0;
  for (const batch of [2, 3]) {
    const actual = await runAllValues(model, batch, types);
    for (const n of model.graph.nodes) {
      for (const v of n.outputs) {
        if (!v.name) continue;
        const got = actual.get(v.name);
        assert.ok(got, `${what}: onnxruntime produced no '${v.name}'`);
        const inferred = analysis.info.get(v)?.shape;
        assert.ok(inferred, `${what}: no shape inferred for '${v.name}' (${n.opType})`);
        const expected = inferred.map((d: Dim) => (d === 'N' ? batch : d));
        assert.deepEqual(
          expected,
          [...got.dims],
          `${what}: shape of '${v.name}' (${n.opType} '${n.name}') at batch ${batch}`,
        );
        assert.equal(ortTypeName(analysis.info.get(v)!.elemType!), got.type, `${what}: type of '${v.name}'`);
        const constant = analysis.constants.get(v);
        if (constant && constant.dataType !== DataType.STRING) {
          const mine = Array.from(constant.data as ArrayLike<number | bigint>, String);
          assert.deepEqual(
            mine,
            Array.from(got.data as ArrayLike<number | bigint>, String),
            `${what}: constant value of '${v.name}'`,
          );
        }
        compared++;
      }
    }
  }
  assert.ok(compared > 0);
}

describe('shape inference against onnxruntime', () => {
  for (const name of FIXTURE_MODELS) {
    for (const variant of [name, `${name}-bnfolded`]) {
      it(`${variant}: every intermediate shape`, async () => {
        await assertShapesMatchRuntime(loadModel(fixture(`${variant}.onnx`)), variant);
      });
    }
  }
  for (const file of SHARED_MODELS) {
    it(`shared ${file}: every intermediate shape`, needsShared(`models/${file}`), async () => {
      await assertShapesMatchRuntime(loadModel(sharedModel(file)), file);
    });
  }
});

// --------------------------------------------------------------------------- a zoo of ops built with the IR

class Builder {
  readonly graph = new Graph();
  private count = 0;

  input(name: string, shape: Dim[], elemType = DataType.FLOAT): Value {
    const v = new Value(name, tensorType(elemType, shape));
    this.graph.inputs.push(v);
    return v;
  }

  init(t: Tensor): Value {
    return this.graph.addInitializer(new Value(`c${this.count++}`, tensorType(t.dataType, [...t.dims])), t);
  }

  ints(values: (number | bigint)[], dims = [values.length]): Value {
    return this.init(Tensor.int64(values, dims));
  }

  op(
    opType: string,
    inputs: (Value | undefined)[],
    attrs: Record<string, ReturnType<typeof intAttr>> = {},
    outputs = 1,
    domain = '',
  ): Value[] {
    const k = this.count++;
    const outs = Array.from({ length: outputs }, (_, i) => new Value(`${opType}_${k}_${i}`));
    const n = new Node(opType, inputs, outs, `${opType}_${k}`, domain);
    for (const [key, a] of Object.entries(attrs)) n.attributes.set(key, a);
    this.graph.addNode(n);
    return outs;
  }

  model(outputs: Value[], opset = 13, outTypes?: Dim[][]): Model {
    outputs.forEach((v, i) => {
      v.type = tensorType(DataType.FLOAT, outTypes?.[i]);
      this.graph.outputs.push(v);
    });
    const m = new Model(this.graph);
    m.irVersion = 8;
    m.opsetImports = [{ domain: '', version: opset }];
    return m;
  }
}

/** Sums the given float tensors into one output so that every branch is live. */
function zooModel(build: (b: Builder, x: Value) => Value[]): Model {
  const b = new Builder();
  const x = b.input('x', ['N', 4, 9, 9]);
  const outs = build(b, x);
  const reduced = outs.map((v) => b.op('ReduceSum', [v], { keepdims: intAttr(0) })[0]!);
  let acc = reduced[0]!;
  for (const r of reduced.slice(1)) acc = b.op('Add', [acc, r])[0]!;
  return b.model([acc]);
}

describe('shape rules against onnxruntime on built models', () => {
  it('convolution and pooling variants (ceil_mode, auto_pad, dilations, ConvTranspose)', async () => {
    const m = zooModel((b, x) => {
      const w = b.init(Tensor.fromArray(DataType.FLOAT, [6, 4, 3, 3], seededFloats(216, 1)));
      const wt = b.init(Tensor.fromArray(DataType.FLOAT, [4, 3, 3, 3], seededFloats(108, 2)));
      return [
        b.op('Conv', [x, w], {
          strides: intsAttr([2, 2]),
          pads: intsAttr([1, 0, 1, 0]),
          dilations: intsAttr([2, 1]),
        })[0]!,
        b.op('Conv', [x, w], { auto_pad: stringAttr('SAME_UPPER'), strides: intsAttr([2, 2]) })[0]!,
        b.op('Conv', [x, w], { auto_pad: stringAttr('VALID'), strides: intsAttr([3, 2]) })[0]!,
        b.op('ConvTranspose', [x, wt], {
          strides: intsAttr([2, 2]),
          pads: intsAttr([1, 1, 0, 0]),
          output_padding: intsAttr([1, 0]),
        })[0]!,
        b.op('MaxPool', [x], {
          kernel_shape: intsAttr([2, 2]),
          strides: intsAttr([2, 2]),
          ceil_mode: intAttr(1),
        })[0]!,
        b.op('MaxPool', [x], {
          kernel_shape: intsAttr([3, 3]),
          strides: intsAttr([2, 2]),
          pads: intsAttr([1, 1, 1, 1]),
          ceil_mode: intAttr(1),
        })[0]!,
        b.op('MaxPool', [x], { kernel_shape: intsAttr([3, 3]), dilations: intsAttr([2, 2]) })[0]!,
        b.op('AveragePool', [x], {
          kernel_shape: intsAttr([4, 3]),
          strides: intsAttr([2, 2]),
          auto_pad: stringAttr('SAME_LOWER'),
        })[0]!,
        b.op('AveragePool', [x], {
          kernel_shape: intsAttr([3, 3]),
          strides: intsAttr([2, 2]),
          auto_pad: stringAttr('VALID'),
        })[0]!,
        b.op('AveragePool', [x], {
          kernel_shape: intsAttr([2, 2]),
          strides: intsAttr([2, 2]),
          ceil_mode: intAttr(1),
          pads: intsAttr([0, 0, 1, 1]),
        })[0]!,
        b.op('GlobalAveragePool', [x])[0]!,
      ];
    });
    await assertShapesMatchRuntime(m, 'conv/pool zoo');
  });

  it('shape manipulation: Reshape/Flatten keep N, Slice negative steps, Split, Squeeze, Gemm, MatMul', async () => {
    const m = zooModel((b, x) => {
      const flat = b.op('Flatten', [x], { axis: intAttr(1) })[0]!; // [N, 324]
      const r = b.op('Reshape', [x, b.ints([-1, 4, 81])])[0]!; // [N, 4, 81]: the batch cancels out
      const r2 = b.op('Reshape', [x, b.ints([0, -1, 3])])[0]!; // [N, 108, 3]
      const sl = b.op('Slice', [
        x,
        b.ints([8, -1]),
        b.ints([-100, 9223372036854775807n]),
        b.ints([2, 1]),
        b.ints([-3, 1]),
      ])[0]!;
      const [s0, s1, s2] = b.op('Split', [x, b.ints([1, 1, 2])], { axis: intAttr(1) }, 3);
      const sq = b.op('Squeeze', [s0!, b.ints([1])])[0]!;
      const un = b.op('Unsqueeze', [sq, b.ints([-1, 0])])[0]!;
      const w = b.init(Tensor.fromArray(DataType.FLOAT, [5, 324], seededFloats(1620, 3)));
      const gemm = b.op('Gemm', [flat, w], { transB: intAttr(1) })[0]!;
      const v = b.init(Tensor.fromArray(DataType.FLOAT, [9], seededFloats(9, 4)));
      const mm1 = b.op('MatMul', [x, v])[0]!; // [N,4,9]
      const mm2 = b.op('MatMul', [v, x])[0]!; // [N,4,9]
      const mm3 = b.op('MatMul', [x, b.op('Transpose', [x], { perm: intsAttr([0, 1, 3, 2]) })[0]!])[0]!;
      const t = b.op('Transpose', [x], { perm: intsAttr([2, 0, 3, 1]) })[0]!;
      const rm = b.op('ReduceMean', [x], { axes: intsAttr([1, -1]), keepdims: intAttr(0) })[0]!;
      const cat = b.op('Concat', [s1!, s2!, x], { axis: intAttr(1) })[0]!;
      const sm = b.op('Softmax', [x], { axis: intAttr(1) })[0]!;
      const pad = b.op('Pad', [x, b.ints([0, 1, 2, 0, 0, 3, 0, 1])])[0]!;
      const [d0] = b.op('Dropout', [x], {}, 2);
      return [flat, r, r2, sl, sq, un, gemm, mm1, mm2, mm3, t, rm, cat, sm, pad, d0!];
    });
    const analysis = analyzeShapes(m);
    const shapeOf = (prefix: string): Dim[] | undefined =>
      [...analysis.info].find(([v]) => v.name.startsWith(prefix))?.[1].shape;
    assert.deepEqual(shapeOf('Flatten'), ['N', 324]);
    assert.deepEqual(analysis.info.get(r2Value(m))?.shape, ['N', 108, 3]);
    assert.deepEqual(shapeOf('Gemm'), ['N', 5]);
    await assertShapesMatchRuntime(m, 'shape zoo');
  });

  it('opset 11 forms: attribute axes/split, Slice and Pad inputs', async () => {
    const b = new Builder();
    const x = b.input('x', ['N', 4, 6]);
    const [a, c] = b.op('Split', [x], { axis: intAttr(1), split: intsAttr([3, 1]) }, 2);
    const un = b.op('Unsqueeze', [a!], { axes: intsAttr([0]) })[0]!;
    const sq = b.op('Squeeze', [un], { axes: intsAttr([0]) })[0]!;
    const rm = b.op('ReduceMean', [c!], { axes: intsAttr([2]) })[0]!;
    const sl = b.op('Slice', [x, b.ints([1]), b.ints([5]), b.ints([2])])[0]!;
    const out = b.op(
      'Concat',
      [sq, b.op('Mul', [rm, b.op('Slice', [a!, b.ints([0]), b.ints([1]), b.ints([1])])[0]!])[0]!],
      { axis: intAttr(1) },
    )[0]!;
    const m = b.model([out, sl]);
    m.opsetImports = [{ domain: '', version: 11 }];
    await assertShapesMatchRuntime(m, 'opset 11');
  });

  it('a computed shape subgraph with the symbolic batch (Shape/Gather/Concat/Equal/Where/Expand/Range)', async () => {
    const b = new Builder();
    const x = b.input('x', ['N', 3, 4, 4]);
    const shape = b.op('Shape', [x])[0]!;
    const batch = b.op('Gather', [shape, b.ints([0], [])], { axis: intAttr(0) })[0]!;
    const batchV = b.op('Unsqueeze', [batch, b.ints([0])])[0]!;
    const target = b.op('Concat', [batchV, b.ints([-1])], { axis: intAttr(0) })[0]!;
    const flat = b.op('Reshape', [x, target])[0]!; // [N, 48]
    const tail = b.op('Shape', [x], { start: intAttr(1) })[0]!; // [3,4,4], constant
    const prod = b.op('ReduceProd', [tail], { keepdims: intAttr(1) })[0]!;
    const isOne = b.op('Equal', [b.ints([48, 1]), b.ints([1, 1])])[0]!;
    const fixed = b.op('Where', [
      isOne,
      b.ints([1, 1]),
      b.op('Concat', [b.ints([1]), prod], { axis: intAttr(0) })[0]!,
    ])[0]!;
    const expanded = b.op('Expand', [flat, fixed])[0]!;
    const rng = b.op('Cast', [b.op('Range', [b.ints([0], []), b.ints([48], []), b.ints([1], [])])[0]!], {
      to: intAttr(DataType.FLOAT),
    })[0]!;
    const out = b.op('Add', [expanded, rng])[0]!;
    const m = b.model([out], 15);
    m.opsetImports = [{ domain: '', version: 15 }];
    const analysis = analyzeShapes(m);
    assert.deepEqual(analysis.info.get(flat)?.shape, ['N', 48]);
    assert.ok(
      analysis.constants.has(tail) && analysis.constants.has(fixed),
      'Shape of static dims and what follows are constants',
    );
    assert.ok(!analysis.constants.has(shape), 'Shape involving the batch is not a constant');
    await assertShapesMatchRuntime(m, 'shape subgraph');
  });
});

function r2Value(m: Model): Value {
  return m.graph.nodes.filter((n) => n.opType === 'Reshape')[1]!.output();
}

describe('inferShapes pass', () => {
  it('Reshape -1 gives unknown when the batch does not cancel out', () => {
    const b = new Builder();
    const x = b.input('x', ['N', 4, 9]);
    const r = b.op('Reshape', [x, b.ints([-1, 12])])[0]!;
    const k = b.op('Reshape', [x, b.ints([2, -1, 0])])[0]!;
    const m = b.model([r, k]);
    const a = analyzeShapes(m);
    assert.deepEqual(a.info.get(r)?.shape, [null, 12]);
    assert.deepEqual(a.info.get(k)?.shape, [2, null, 9]);
  });

  it('an input-shape override makes every dim numeric, and Shape-driven Reshapes exact', async () => {
    const m = loadModel(fixture('densenet.onnx'));
    const result = inferShapes.run(m, { inputShapes: { input: [1, 3, 32, 32] } });
    assert.deepEqual(result.warnings, []);
    for (const n of m.graph.nodes)
      for (const v of n.outputs)
        assert.ok(
          v.shape?.every((d) => typeof d === 'number'),
          `'${v.name}' has dims ${JSON.stringify(v.shape)}`,
        );
    assert.deepEqual(m.graph.outputs[0]!.shape, [1, 10]);
    assert.deepEqual(m.graph.inputs[0]!.shape, [1, 3, 32, 32]);
  });

  it('keeps the symbolic batch by default and records value_info only when asked', () => {
    const m = loadModel(fixture('resnet_a.onnx'));
    const plain = inferShapes.run(m, undefined);
    assert.equal(m.graph.valueInfo.length, 0);
    const named = m.graph.nodes
      .flatMap((n) => n.outputs)
      .filter((v) => v.name && !m.graph.outputs.includes(v));
    assert.equal(plain.typed, named.length + m.graph.outputs.length);
    const flatten = m.graph.nodes.find((n) => n.opType === 'Flatten')!;
    assert.deepEqual(flatten.output().shape, ['N', 64]);
    const recorded = inferShapes.run(m, { recordValueInfo: true });
    assert.equal(recorded.recorded, named.length);
    const back = decodeModel(serializeModel(m));
    assert.equal(back.graph.valueInfo.length, named.length);
    assert.deepEqual(verifyModel(back), []);
    assert.equal(inferShapes.run(m, { recordValueInfo: true }).recorded, 0, 'no duplicates on a second run');
  });

  it('rejects an override for an input that does not exist', () => {
    const m = loadModel(fixture('vgg.onnx'));
    assert.throws(
      () => inferShapes.run(m, { inputShapes: { image: [1, 3, 32, 32] } }),
      /'image', which is not a graph input/,
    );
  });

  it('an unknown custom-domain op keeps its declared shapes and the analysis goes on', () => {
    const b = new Builder();
    const x = b.input('x', ['N', 3, 8, 8]);
    const w = b.init(Tensor.fromArray(DataType.FLOAT, [5, 3, 3, 3], seededFloats(135, 5)));
    const c = b.op('Conv', [x, w], { pads: intsAttr([1, 1, 1, 1]) })[0]!;
    const custom = b.op('FancyNorm', [c], { alpha: floatAttr(0.5) }, 1, 'com.example')[0]!;
    custom.type = tensorType(DataType.FLOAT, ['N', 5, 4, 4]);
    const unknown = b.op('MysteryOp', [custom])[0]!; // default domain, but no rule and no declaration
    const pooled = b.op('GlobalAveragePool', [custom])[0]!;
    const flat = b.op('Flatten', [pooled])[0]!;
    const m = b.model([flat, unknown]);
    m.opsetImports.push({ domain: 'com.example', version: 1 });
    const result = inferShapes.run(m, undefined);
    assert.equal(result.warnings.length, 2);
    assert.match(result.warnings[0]!, /FancyNorm.*custom domain 'com.example'/);
    assert.match(result.warnings[1]!, /MysteryOp.*no shape rule/);
    assert.deepEqual(c.shape, ['N', 5, 8, 8]);
    assert.deepEqual(custom.shape, ['N', 5, 4, 4], 'the declared shape stays');
    assert.deepEqual(flat.shape, ['N', 5], 'inference continues past the unknown op');
    assert.equal(unknown.shape, undefined);
  });

  it('ConstantOfShape, Constant value_* attributes and Cast types', async () => {
    const b = new Builder();
    const x = b.input('x', ['N', 2]);
    const k1 = b.op('Constant', [], { value_ints: intsAttr([2, 3]) })[0]!;
    const k2 = b.op('Constant', [], { value_float: floatAttr(1.5) })[0]!;
    const k3 = b.op('Constant', [], { value: tensorAttr(Tensor.fromArray(DataType.INT32, [2], [4, 5])) })[0]!;
    const words = b.op('Constant', [], {
      value_strings: {
        type: AttributeType.STRINGS,
        value: [new TextEncoder().encode('a'), new TextEncoder().encode('b')],
      },
    })[0]!;
    const filled = b.op('ConstantOfShape', [b.op('Cast', [k3], { to: intAttr(DataType.INT64) })[0]!], {
      value: tensorAttr(Tensor.fromArray(DataType.FLOAT, [1], [2])),
    })[0]!;
    const z = b.op('ConstantOfShape', [k1])[0]!;
    const s = b.op('ReduceSum', [b.op('Mul', [filled, k2])[0]!], { keepdims: intAttr(0) })[0]!;
    const out = b.op('Add', [
      b.op('ReduceSum', [z], { keepdims: intAttr(0) })[0]!,
      b.op('Mul', [x, s])[0]!,
    ])[0]!;
    const m = b.model([out]);
    const a = analyzeShapes(m);
    assert.deepEqual(a.info.get(filled)?.shape, [4, 5]);
    assert.equal(a.info.get(k3)?.elemType, DataType.INT32);
    assert.deepEqual(a.info.get(words), { elemType: DataType.STRING, shape: [2] });
    await assertShapesMatchRuntime(m, 'constants');
  });
});
