import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { UserError } from '../src/errors.js';
import {
  AttributeType,
  DataType,
  decodeModel,
  loadModel,
  saveModel,
  serializeModel,
  verifyModel,
  type Graph,
  type Model,
  type Tensor,
} from '../src/ir/index.js';
import { ModelProtoType, TensorProtoType } from '../src/ir/onnx-schema.js';
import { Tensor as IrTensor } from '../src/ir/tensor.js';
import { FIXTURES, SHARED, needsShared, tmpDir } from './helpers.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- protobuf messages are plain objects */
type Msg = Record<string, any>;

const onnxFiles = (dir: string): string[] =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => f.endsWith('.onnx'))
        .sort()
        .map((f) => path.join(dir, f))
    : [];

/** A seeded generator (mulberry32) so inputs are the same on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random inputs for every graph input that is not an initializer; symbolic dims become 2. */
function inputsFor(model: Model, seed: number): Record<string, ort.Tensor> {
  const rand = random(seed);
  const feeds: Record<string, ort.Tensor> = {};
  for (const v of model.graph.inputs) {
    if (v.isInitializer) continue;
    const dims = (v.shape ?? []).map((d) => (typeof d === 'number' ? d : 2));
    const n = dims.reduce((a, b) => a * b, 1);
    if (v.elemType === DataType.FLOAT)
      feeds[v.name] = new ort.Tensor(
        'float32',
        Float32Array.from({ length: n }, () => rand() * 2 - 1),
        dims,
      );
    else if (v.elemType === DataType.BOOL)
      feeds[v.name] = new ort.Tensor(
        'bool',
        Uint8Array.from({ length: n }, () => (rand() < 0.5 ? 1 : 0)),
        dims,
      );
    else throw new Error(`no input generator for ${v.name}`);
  }
  return feeds;
}

/** Every output's bytes, from a session on `bytes`. */
async function runBytes(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Map<string, Buffer>> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const out = await session.run(feeds);
    return new Map(
      Object.entries(out).map(([k, t]) => {
        const d = t.data as ArrayBufferView;
        return [k, Buffer.from(d.buffer, d.byteOffset, d.byteLength)];
      }),
    );
  } finally {
    await session.release();
  }
}

/** A plain description of a graph tree for structural comparison: names, ops, attributes, types, data bytes. */
function describeGraph(g: Graph, withData: boolean): unknown {
  const tensor = (t: Tensor): unknown => ({
    name: t.name,
    dims: [...t.dims],
    type: t.dataType,
    external: t.isExternal,
    data:
      withData && !t.isExternal && t.dataType !== DataType.STRING
        ? Buffer.from(t.rawBytes()).toString('base64')
        : undefined,
  });
  const attr = (a: any): unknown => {
    switch (a.type) {
      case AttributeType.GRAPH:
        return describeGraph(a.value, withData);
      case AttributeType.GRAPHS:
        return a.value.map((s: Graph) => describeGraph(s, withData));
      case AttributeType.TENSOR:
        return tensor(a.value);
      case AttributeType.TENSORS:
        return a.value.map(tensor);
      case AttributeType.INT:
        return String(a.value);
      case AttributeType.INTS:
        return a.value.map(String);
      default:
        return a.value;
    }
  };
  return {
    name: g.name,
    inputs: g.inputs.map((v) => [v.name, JSON.stringify(v.type)]),
    outputs: g.outputs.map((v) => [v.name, JSON.stringify(v.type)]),
    initializers: g.initializers.map((v) => tensor(v.initializer!)),
    valueInfo: g.valueInfo.map((v) => [v.name, JSON.stringify(v.type), v.infoExtra]),
    nodes: g.nodes.map((n) => ({
      op: n.opType,
      domain: n.domain,
      name: n.name,
      overload: n.overload,
      extra: n.extra,
      inputs: n.inputs.map((v) => v?.name ?? ''),
      outputs: n.outputs.map((v) => v.name),
      uses: n.outputs.map((v) => v.uses.length),
      attrs: [...n.attributes].map(([k, a]) => [k, a.type, attr(a)]),
    })),
  };
}

const toObject = (bytes: Uint8Array): Msg =>
  ModelProtoType.toObject(ModelProtoType.decode(bytes), { longs: String, bytes: String, defaults: false });

const inlineFixtures = [...onnxFiles(FIXTURES)];
const sharedModels = onnxFiles(path.join(SHARED, 'models'));

for (const file of inlineFixtures) {
  test(`round trip of fixtures/${path.basename(file)}: same bytes, same graph, same onnxruntime outputs`, async () => {
    await checkRoundTrip(file);
  });
}

for (const name of [
  'resnet20-cifar10.onnx',
  'resnet32-cifar10.onnx',
  'resnet44-cifar10.onnx',
  'resnet56-cifar10.onnx',
  'resnet56-cifar10-bnfolded.onnx',
]) {
  test(`round trip of ../shared/models/${name}`, needsShared(`models/${name}`), async () => {
    await checkRoundTrip(path.join(SHARED, 'models', name));
  });
}

test('every shared model is covered by the list above', needsShared('models'), () => {
  assert.deepEqual(sharedModels.map((f) => path.basename(f)).sort(), [
    'resnet20-cifar10.onnx',
    'resnet32-cifar10.onnx',
    'resnet44-cifar10.onnx',
    'resnet56-cifar10-bnfolded.onnx',
    'resnet56-cifar10.onnx',
  ]);
});

async function checkRoundTrip(file: string): Promise<void> {
  const original = fs.readFileSync(file);
  const model = loadModel(file);
  const bytes = serializeModel(model);
  assert.equal(bytes.length, original.length);
  assert.ok(Buffer.from(bytes).equals(original), 're-serialised bytes differ from the file');
  const again = decodeModel(bytes);
  assert.deepEqual(describeGraph(again.graph, true), describeGraph(model.graph, true));
  const feeds = inputsFor(model, 7);
  const before = await runBytes(original, feeds);
  const after = await runBytes(bytes, feeds);
  assert.ok(before.size > 0);
  for (const [name, data] of before) assert.ok(data.equals(after.get(name)!), `output '${name}' differs`);
}

test('a changed initializer is written as raw_data and read back bit for bit', async () => {
  const file = path.join(FIXTURES, 'resnet_b.onnx');
  const model = loadModel(file);
  const w = model.graph.initializers.find(
    (v) => v.initializer!.dataType === DataType.FLOAT && v.initializer!.size > 100,
  )!;
  const data = Float32Array.from(w.initializer!.data as Float32Array, (x) => -x);
  w.initializer!.setData(data);
  const back = decodeModel(serializeModel(model));
  const reread = back.graph.initializers.find((v) => v.name === w.name)!.initializer!;
  assert.deepEqual(Buffer.from(reread.rawBytes()), Buffer.from(data.buffer));
  const feeds = inputsFor(model, 3);
  const original = await runBytes(fs.readFileSync(file), feeds);
  const changed = await runBytes(serializeModel(back), feeds);
  const name = [...original.keys()][0]!;
  assert.ok(!original.get(name)!.equals(changed.get(name)!), 'negating a weight should change the output');
});

test('initializer data is a zero-copy view on the file bytes when aligned', () => {
  const bytes = fs.readFileSync(path.join(FIXTURES, 'vgg.onnx'));
  const model = decodeModel(bytes);
  let views = 0;
  for (const v of model.graph.initializers) {
    const d = v.initializer!.data;
    if (d.buffer === bytes.buffer) views++;
  }
  // Alignment decides per tensor; a 4-byte-aligned float tensor must not be copied.
  const aligned = model.graph.initializers.filter((v) => {
    const raw = v.initializer!.toProto().raw_data;
    return raw && raw.byteOffset % 4 === 0 && v.initializer!.dataType === DataType.FLOAT;
  }).length;
  assert.ok(aligned > 0);
  assert.ok(views >= aligned, `${views} views for ${aligned} aligned tensors`);
});

// ---- torchvision structure-only models: external data whose file is absent ----

for (const file of onnxFiles(path.join(FIXTURES, 'torchvision'))) {
  const name = path.basename(file, '.onnx');
  test(`torchvision/${name}: loads without its weights; saving refuses clearly and leaves nothing behind`, () => {
    const ref = JSON.parse(fs.readFileSync(file.replace(/\.onnx$/, '.ref.json'), 'utf8'));
    const model = loadModel(file);
    assert.equal(model.graph.nodes.length, ref.onnx.nodes);
    assert.equal(model.graph.initializers.length, ref.onnx.initializers);
    assert.ok(model.graph.initializers.every((v) => v.initializer!.isExternal));
    assert.throws(() => model.graph.initializers[0]!.initializer!.data, /ENOENT/);
    const dir = tmpDir();
    const out = path.join(dir, 'out.onnx');
    assert.throws(
      () => saveModel(model, out),
      (e: unknown) =>
        e instanceof UserError &&
        e.message.includes(out) &&
        /weights\.bin/.test(e.message) &&
        !e.message.includes('\n'),
    );
    assert.deepEqual(fs.readdirSync(dir), []);
  });
}

// ---- a model carrying IR-10 fields the onnx-proto package does not know ----

const floatType = (dims: number[]): Msg => ({
  tensor_type: { elem_type: DataType.FLOAT, shape: { dim: dims.map((d) => ({ dim_value: d })) } },
});
const scalarType = (elem: DataType): Msg => ({ tensor_type: { elem_type: elem, shape: { dim: [] } } });
const meta = (key: string, value: string): Msg => ({ key, value });
const f32 = (name: string, dims: number[], values: number[]): Msg => ({
  name,
  dims,
  data_type: DataType.FLOAT,
  raw_data: new Uint8Array(new Float32Array(values).buffer),
});

/**
 * X[2,3], cond -> If (then: X + W, else: X - W, both capturing outer values) -> Loop 3x (body adds the outer W)
 * -> a local function (with an overload) adding one -> times a sparse initializer S -> Y.
 */
function ir10Model(): Msg {
  const W = f32('W', [2, 3], [0.5, -1, 2, 0.25, 3, -0.75]);
  const branch = (op: string, out: string): Msg => ({
    name: `${op}_branch`,
    node: [
      {
        input: ['X', 'W'],
        output: [out],
        op_type: op,
        name: `${op}_in_branch`,
        metadata_props: [meta('branch', op)],
      },
    ],
    output: [{ name: out, type: floatType([2, 3]) }],
  });
  const loopBody: Msg = {
    name: 'loop_body',
    node: [
      { input: ['cond_in'], output: ['cond_out'], op_type: 'Identity', name: 'loop_cond' },
      { input: ['v_in', 'W'], output: ['v_out'], op_type: 'Add', name: 'loop_add' },
    ],
    input: [
      { name: 'iter', type: scalarType(DataType.INT64) },
      { name: 'cond_in', type: scalarType(DataType.BOOL) },
      { name: 'v_in', type: floatType([2, 3]) },
    ],
    output: [
      { name: 'cond_out', type: scalarType(DataType.BOOL) },
      { name: 'v_out', type: floatType([2, 3]) },
    ],
  };
  const graph: Msg = {
    name: 'ir10',
    doc_string: 'graph doc',
    metadata_props: [meta('graph-key', 'graph-value')],
    initializer: [W, { name: 'M', dims: [], data_type: DataType.INT64, int64_data: [3] }],
    sparse_initializer: [
      {
        values: { name: 'S', dims: [2], data_type: DataType.FLOAT, float_data: [2, -3] },
        indices: { name: 'S_indices', dims: [2], data_type: DataType.INT64, int64_data: [1, 5] },
        dims: [2, 3],
      },
    ],
    input: [
      { name: 'X', type: floatType([2, 3]), doc_string: 'input doc', metadata_props: [meta('in', 'x')] },
      { name: 'cond', type: scalarType(DataType.BOOL) },
    ],
    node: [
      {
        input: ['cond'],
        output: ['if_out'],
        op_type: 'If',
        name: 'branch',
        doc_string: 'if doc',
        metadata_props: [meta('node-key', 'node-value')],
        attribute: [
          { name: 'then_branch', type: AttributeType.GRAPH, g: branch('Add', 'then_out') },
          { name: 'else_branch', type: AttributeType.GRAPH, g: branch('Sub', 'else_out') },
        ],
      },
      {
        input: ['M', '', 'if_out'],
        output: ['loop_out'],
        op_type: 'Loop',
        name: 'loop',
        attribute: [{ name: 'body', type: AttributeType.GRAPH, g: loopBody }],
      },
      {
        input: ['loop_out'],
        output: ['plus_one'],
        op_type: 'AddOne',
        domain: 'local',
        overload: 'v2',
        name: 'call',
      },
      { input: ['plus_one', 'S'], output: ['Y'], op_type: 'Mul', name: 'scale' },
    ],
    output: [{ name: 'Y', type: floatType([2, 3]) }],
    value_info: [{ name: 'if_out', type: floatType([2, 3]), metadata_props: [meta('vi', 'if')] }],
  };
  return {
    ir_version: 10,
    opset_import: [
      { domain: '', version: 21 },
      { domain: 'local', version: 1 },
    ],
    producer_name: 'adapruner-test',
    producer_version: '1',
    domain: 'test.adapruner',
    model_version: 4,
    doc_string: 'model doc',
    graph,
    metadata_props: [meta('model-key', 'model-value')],
    functions: [
      {
        name: 'AddOne',
        domain: 'local',
        overload: 'v2',
        input: ['x'],
        output: ['y'],
        opset_import: [{ domain: '', version: 21 }],
        node: [
          {
            output: ['one'],
            op_type: 'Constant',
            attribute: [{ name: 'value', type: AttributeType.TENSOR, t: f32('', [], [1]) }],
          },
          { input: ['x', 'one'], output: ['y'], op_type: 'Add' },
        ],
        value_info: [{ name: 'one', type: scalarType(DataType.FLOAT) }],
        metadata_props: [meta('fn', 'addone')],
        doc_string: 'function doc',
      },
    ],
    training_info: [
      {
        initialization: {
          name: 'init',
          node: [
            {
              output: ['W_init'],
              op_type: 'Constant',
              attribute: [
                { name: 'value', type: AttributeType.TENSOR, t: f32('', [2, 3], [0, 0, 0, 0, 0, 0]) },
              ],
            },
          ],
          output: [{ name: 'W_init', type: floatType([2, 3]) }],
        },
        algorithm: {
          name: 'algo',
          node: [{ input: ['W'], output: ['W_new'], op_type: 'Identity' }],
          output: [{ name: 'W_new', type: floatType([2, 3]) }],
        },
        initialization_binding: [meta('W', 'W_init')],
        update_binding: [meta('W', 'W_new')],
      },
    ],
  };
}

test('a model with IR-10 fields, functions, sparse initializers, training_info and subgraphs round-trips losslessly', async () => {
  const message = ir10Model();
  const Model = ModelProtoType;
  assert.equal(Model.verify(message), null);
  const original = Model.encode(Model.fromObject(message)).finish();
  const dir = tmpDir();
  const input = path.join(dir, 'ir10.onnx');
  fs.writeFileSync(input, original);
  const model = loadModel(input);

  assert.deepEqual(verifyModel(model), []);
  assert.equal(model.graph.sparseInitializers[0]!.uses.length, 1);
  const ifNode = model.graph.nodeByName('branch')!;
  const [thenGraph] = ifNode.subgraphs();
  const X = model.graph.inputs[0]!;
  // The captured outer value knows its uses inside the subgraphs.
  assert.ok(X.uses.some((u) => u.node.graph === thenGraph));
  assert.equal(thenGraph!.parent, model.graph);

  const out = path.join(dir, 'ir10-saved.onnx');
  saveModel(model, out);
  const saved = fs.readFileSync(out);
  assert.deepEqual(toObject(saved), toObject(original));
  assert.ok(saved.equals(Buffer.from(original)), 'an untouched model re-encodes byte for byte');

  // Spot checks that the fields really are there (not lost on both sides).
  const decoded = toObject(saved);
  assert.equal(decoded.graph.node[0].metadata_props[0].value, 'node-value');
  assert.equal(decoded.graph.node[2].overload, 'v2');
  assert.equal(decoded.graph.metadata_props[0].key, 'graph-key');
  assert.equal(decoded.graph.value_info[0].metadata_props[0].value, 'if');
  assert.equal(decoded.graph.sparse_initializer[0].values.name, 'S');
  assert.equal(decoded.functions[0].overload, 'v2');
  assert.equal(decoded.training_info[0].update_binding[0].value, 'W_new');

  for (const cond of [0, 1]) {
    const feeds = {
      X: new ort.Tensor('float32', new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]),
      cond: new ort.Tensor('bool', new Uint8Array([cond]), []),
    };
    const before = (await runBytes(original, feeds)).get('Y')!;
    const after = (await runBytes(saved, feeds)).get('Y')!;
    assert.ok(before.equals(after));
    // X±W, then +3W, +1, times S (nonzero only at flat positions 1 and 5).
    const x = [1, 2, 3, 4, 5, 6];
    const w = [0.5, -1, 2, 0.25, 3, -0.75];
    const s = [0, 2, 0, 0, 0, -3];
    const expected = new Float32Array(
      x.map((xi, i) => Math.fround((Math.fround(cond ? xi + w[i]! : xi - w[i]!) + 3 * w[i]! + 1) * s[i]!)),
    );
    const got = new Float32Array(after.buffer.slice(after.byteOffset, after.byteOffset + after.byteLength));
    for (let i = 0; i < 6; i++)
      assert.ok(
        Math.abs(got[i]! - expected[i]!) < 1e-5,
        `Y[${i}] = ${got[i]}, expected ${expected[i]} (cond ${cond})`,
      );
  }
});

test('an edited IR-10 model still keeps the fields the IR does not model', () => {
  const model = decodeModel(ModelProtoType.encode(ModelProtoType.fromObject(ir10Model())).finish());
  const W = model.graph.initializers.find((v) => v.name === 'W')!;
  W.initializer!.setData(new Float32Array(6).fill(1));
  model.graph.nodeByName('scale')!.name = 'renamed';
  const decoded = toObject(serializeModel(model));
  assert.equal(decoded.graph.node[3].name, 'renamed');
  assert.equal(decoded.graph.node[0].metadata_props[0].value, 'node-value');
  assert.equal(decoded.graph.node[0].attribute[0].g.node[0].metadata_props[0].value, 'Add');
  assert.equal(decoded.functions.length, 1);
  assert.equal(decoded.training_info.length, 1);
  assert.equal(
    decoded.graph.initializer[0].raw_data,
    Buffer.from(new Float32Array(6).fill(1).buffer).toString('base64'),
  );
});

// ---- tensors of every data type ----

const TYPED: [DataType, new (n: number) => ArrayBufferView & ArrayLike<unknown>, string, unknown[]][] = [
  [DataType.FLOAT, Float32Array, 'float_data', [1.5, -2, 3]],
  [DataType.DOUBLE, Float64Array, 'double_data', [1.25, -2, 1e300]],
  [DataType.INT32, Int32Array, 'int32_data', [-7, 0, 2147483647]],
  [DataType.INT64, BigInt64Array, 'int64_data', [-(2n ** 63n), 0n, 2n ** 63n - 1n]],
  [DataType.UINT64, BigUint64Array, 'uint64_data', [0n, 1n, 2n ** 64n - 1n]],
  [DataType.UINT32, Uint32Array, 'uint64_data', [0, 1, 4294967295]],
  [DataType.INT8, Int8Array, 'int32_data', [-128, 0, 127]],
  [DataType.UINT8, Uint8Array, 'int32_data', [0, 1, 255]],
  [DataType.INT16, Int16Array, 'int32_data', [-32768, 1, 32767]],
  [DataType.UINT16, Uint16Array, 'int32_data', [0, 1, 65535]],
  [DataType.BOOL, Uint8Array, 'int32_data', [1, 0, 1]],
  // float16 / bfloat16 / float8 stay as raw bits: 0x3c00 is 1.0 in half precision, 0x3f80 in bfloat16.
  [DataType.FLOAT16, Uint16Array, 'int32_data', [0x3c00, 0xc000, 0x7c00]],
  [DataType.BFLOAT16, Uint16Array, 'int32_data', [0x3f80, 0xc000, 0x7f80]],
  [DataType.FLOAT8E4M3FN, Uint8Array, 'int32_data', [0x38, 0xb8, 0x7e]],
  [DataType.COMPLEX64, Float32Array, 'float_data', [1, 2, 3, 4, 5, 6]],
];

for (const [type, Ctor, field, values] of TYPED) {
  test(`${DataType[type]} tensors decode to ${Ctor.name} from raw_data (zero-copy) and from ${field}, and survive a round trip`, () => {
    const lanes = type === DataType.COMPLEX64 ? 2 : 1;
    const dims = [values.length / lanes];
    const expected = (Ctor as unknown as { from(a: unknown[]): ArrayBufferView }).from(values);
    const raw = new Uint8Array(expected.buffer.slice(0));
    const fromRaw = IrTensor.fromProto({ name: 't', dims, data_type: type, raw_data: raw });
    assert.ok(fromRaw.data instanceof Ctor);
    assert.deepEqual(
      Array.from(fromRaw.data as ArrayLike<unknown>),
      Array.from(expected as unknown as ArrayLike<unknown>),
    );
    assert.equal(fromRaw.data.buffer, raw.buffer, 'aligned raw_data is viewed, not copied');
    // Typed fields as a decoder gives them (int64 fields arrive as Long).
    const encoded = TensorProtoType.encode(
      TensorProtoType.fromObject({
        name: 't',
        dims,
        data_type: type,
        [field]: values.map((v) => (typeof v === 'bigint' ? v.toString() : v)),
      }),
    ).finish();
    const fromFields = IrTensor.fromProto(TensorProtoType.decode(encoded) as never);
    assert.ok(fromFields.data instanceof Ctor);
    assert.deepEqual(
      Array.from(fromFields.data as ArrayLike<unknown>),
      Array.from(expected as unknown as ArrayLike<unknown>),
    );
    // Untouched, the typed field is re-emitted as it came; after setData, raw_data carries the same bytes.
    assert.deepEqual(
      Buffer.from(TensorProtoType.encode(fromFields.toProto() as never).finish()),
      Buffer.from(encoded),
    );
    fromFields.setData(fromFields.data.slice());
    const rewritten = IrTensor.fromProto(
      TensorProtoType.decode(TensorProtoType.encode(fromFields.toProto() as never).finish()) as never,
    );
    assert.deepEqual(Buffer.from(rewritten.rawBytes()), Buffer.from(raw));
  });
}

test('4-bit tensors pack two elements per byte; strings keep their bytes', () => {
  const int4 = IrTensor.fromProto({
    name: 'q',
    dims: [3],
    data_type: DataType.INT4,
    raw_data: new Uint8Array([0x21, 0x0f]),
  });
  assert.equal(int4.byteLength, 2);
  assert.deepEqual([...int4.data], [0x21, 0x0f]);
  const s = IrTensor.fromProto({
    name: 's',
    dims: [2],
    data_type: DataType.STRING,
    string_data: [new Uint8Array([104, 105]), new Uint8Array([])],
  });
  assert.deepEqual(
    s.strings.map((b) => Buffer.from(b).toString()),
    ['hi', ''],
  );
  assert.throws(() => s.data, /holds no numbers/);
});

test("saveModel's streamed writer produces exactly serializeModel's bytes, for untouched and changed weights", () => {
  const dir = tmpDir();
  for (const name of ['mobilenetv2.onnx', 'densenet-bnfolded.onnx']) {
    const model = loadModel(path.join(FIXTURES, name));
    const big = model.graph.initializers.filter((v) => v.initializer!.byteLength >= 4096);
    assert.ok(big.length > 0, 'the model has tensors large enough to be streamed');
    for (const v of big.slice(0, 3))
      v.initializer!.setData(Float32Array.from(v.initializer!.data as Float32Array, (x) => x * 2));
    const out = path.join(dir, name);
    saveModel(model, out);
    assert.ok(fs.readFileSync(out).equals(Buffer.from(serializeModel(model))), name);
  }
});
