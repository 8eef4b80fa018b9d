import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { AttributeType, intAttr, tensorAttr } from '../src/ir/attribute.js';
import { DataType } from '../src/ir/data-type.js';
import { Graph, Node, Value } from '../src/ir/graph.js';
import { decodeModel, loadModel } from '../src/ir/load.js';
import { Model } from '../src/ir/model.js';
import { serializeModel } from '../src/ir/save.js';
import { Tensor } from '../src/ir/tensor.js';
import { tensorType, type Dim } from '../src/ir/types.js';
import { verifyModel } from '../src/ir/verify.js';
import {
  PassManager,
  cleanupPipeline,
  foldConstants,
  inferShapes,
  removeDeadNodes,
  removeDropout,
  removeIdentity,
  topoSort,
  type CleanupSummary,
} from '../src/passes/index.js';
import { FIXTURE_MODELS, SHARED_MODELS, fixture, needsShared, seededFloats, sharedModel } from './helpers.js';

/** Runs a model in onnxruntime (optimizations off) on a seeded input with symbolic dims set to `batch`. */
async function run(model: Model, batch = 2): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(serializeModel(model), {
    graphOptimizationLevel: 'disabled',
  });
  const inits = new Set(model.graph.initializers);
  const feeds: Record<string, ort.Tensor> = {};
  model.graph.inputs.forEach((v, k) => {
    if (inits.has(v)) return;
    const dims = v.shape!.map((d) => (typeof d === 'number' ? d : batch));
    feeds[v.name] = new ort.Tensor(
      'float32',
      seededFloats(
        dims.reduce((a, b) => a * b, 1),
        11 + k,
      ),
      dims,
    );
  });
  const out = await session.run(feeds);
  await session.release();
  return out;
}

function assertSameOutputs(a: Record<string, ort.Tensor>, b: Record<string, ort.Tensor>, what: string): void {
  assert.deepEqual(Object.keys(b).sort(), Object.keys(a).sort(), `${what}: output names`);
  for (const name of Object.keys(a)) {
    assert.deepEqual([...b[name]!.dims], [...a[name]!.dims], `${what}: dims of ${name}`);
    const x = a[name]!.data as Float32Array;
    const y = b[name]!.data as Float32Array;
    // Bit-for-bit: compare the raw bytes, so -0 vs 0 or differing NaNs would fail too.
    assert.ok(
      Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(
        Buffer.from(y.buffer, y.byteOffset, y.byteLength),
      ),
      `${what}: values of ${name} differ`,
    );
  }
}

const ZERO: CleanupSummary = {
  identities: 0,
  dropouts: 0,
  folded: 0,
  constantReshapes: 0,
  foldedInitializers: 0,
  deadNodes: 0,
  unusedInitializers: 0,
  reordered: 0,
};

/** Cleans `model` (with value_info recorded first, so dangling entries would show) and checks the invariants. */
async function cleanAndCheck(model: Model, what: string): Promise<CleanupSummary> {
  const before = await run(model);
  inferShapes.run(model, { recordValueInfo: true });
  const pm = new PassManager({ debug: true });
  const summary = cleanupPipeline(pm, model);
  assert.deepEqual(verifyModel(model), [], `${what}: IR verifies`);
  const defined = new Set(model.graph.definedValues());
  for (const v of model.graph.valueInfo)
    assert.ok(defined.has(v), `${what}: value_info '${v.name}' is dangling`);
  assert.equal(
    new Set(model.graph.valueInfo.map((v) => v.name)).size,
    model.graph.valueInfo.length,
    `${what}: value_info names unique`,
  );
  const bytes = serializeModel(model);
  assert.deepEqual(cleanupPipeline(pm, model), ZERO, `${what}: a second run changes nothing`);
  assert.ok(
    Buffer.from(serializeModel(model)).equals(Buffer.from(bytes)),
    `${what}: a second run leaves the same bytes`,
  );
  assertSameOutputs(before, await run(decodeModel(bytes)), what);
  return summary;
}

function opCounts(model: Model): Map<string, number> {
  const m = new Map<string, number>();
  for (const n of model.graph.nodes) m.set(n.opType, (m.get(n.opType) ?? 0) + 1);
  return m;
}

describe('cleanup pipeline on real exports', () => {
  for (const name of FIXTURE_MODELS) {
    for (const variant of [name, `${name}-bnfolded`]) {
      it(`${variant}: same outputs bit for bit, verifies, idempotent`, async () => {
        await cleanAndCheck(loadModel(fixture(`${variant}.onnx`)), variant);
      });
    }
  }

  for (const file of SHARED_MODELS) {
    it(`shared ${file}: pads fold to constants`, needsShared(`models/${file}`), async () => {
      const model = loadModel(sharedModel(file));
      const summary = await cleanAndCheck(model, file);
      assert.ok(summary.folded > 0);
      const pads = model.graph.nodes
        .filter((n) => n.opType === 'Pad')
        .map((n) => n.input(1).initializer?.toNumbers());
      assert.deepEqual(pads, [
        [0, 8, 0, 0, 0, 8, 0, 0],
        [0, 16, 0, 0, 0, 16, 0, 0],
      ]);
      const ops = opCounts(model);
      for (const op of [
        'Shape',
        'Gather',
        'ConstantOfShape',
        'Constant',
        'Concat',
        'Transpose',
        'Cast',
        'Reshape',
        'Mul',
        'Sub',
      ])
        assert.equal(ops.get(op) ?? 0, 0, `${file}: no ${op} left`);
      assert.equal(ops.get('Slice'), 4, 'the ::2 shortcut slices stay');
      assert.equal(ops.get('Conv'), opCounts(loadModel(sharedModel(file))).get('Conv'), 'convs untouched');
    });
  }

  it('keeps the names of nodes that are not folded', needsShared('models/resnet56-cifar10.onnx'), () => {
    const original = loadModel(sharedModel('resnet56-cifar10.onnx'));
    const model = loadModel(sharedModel('resnet56-cifar10.onnx'));
    cleanupPipeline(new PassManager(), model);
    const keptOps = new Set([
      'Conv',
      'BatchNormalization',
      'Relu',
      'Add',
      'Pad',
      'GlobalAveragePool',
      'Flatten',
      'Gemm',
    ]);
    const expected = original.graph.nodes.filter((n) => keptOps.has(n.opType)).map((n) => n.name);
    assert.deepEqual(
      model.graph.nodes.filter((n) => keptOps.has(n.opType)).map((n) => n.name),
      expected,
    );
  });
});

// ------------------------------------------------------------------------------------------ built models

function tiny(opset = 13): {
  g: Graph;
  x: Value;
  model: (outs: Value[]) => Model;
  node: (op: string, ins: (Value | undefined)[], n?: number, name?: string) => Value[];
} {
  const g = new Graph();
  const x = new Value('x', tensorType(DataType.FLOAT, ['N', 3]));
  g.inputs.push(x);
  let k = 0;
  const node = (op: string, ins: (Value | undefined)[], n = 1, name = `${op}_${k}`): Value[] => {
    const outs = Array.from({ length: n }, (_, i) => new Value(`${name}_out${i}`));
    g.addNode(new Node(op, ins, outs, name));
    k++;
    return outs;
  };
  const model = (outs: Value[]): Model => {
    for (const v of outs) {
      v.type ??= tensorType(DataType.FLOAT, ['N', 3] as Dim[]);
      g.outputs.push(v);
    }
    const m = new Model(g);
    m.irVersion = 8;
    m.opsetImports = [{ domain: '', version: opset }];
    return m;
  };
  return { g, x, model, node };
}

describe('remove-identity', () => {
  it('renames the producer when the Identity output is a graph output, and keeps input-to-output Identities', async () => {
    const t = tiny();
    const [r] = t.node('Relu', [t.x]);
    const [y] = t.node('Identity', [r!], 1, 'id_out');
    const [passthrough] = t.node('Identity', [t.x], 1, 'id_in');
    const [mid] = t.node('Identity', [r!], 1, 'id_mid');
    const [z] = t.node('Neg', [mid!]);
    y!.type = tensorType(DataType.FLOAT, ['N', 3]);
    const m = t.model([y!, passthrough!, z!]);
    const before = await run(m);
    const result = removeIdentity.run(m);
    assert.equal(result.removed, 2);
    assert.deepEqual(
      m.graph.outputs.map((v) => v.name),
      [y!.name, passthrough!.name, z!.name],
    );
    assert.equal(m.graph.outputs[0]!.producer?.opType, 'Relu');
    assert.equal(
      m.graph.outputs[1]!.producer?.opType,
      'Identity',
      'an input cannot be renamed; the Identity stays',
    );
    assert.deepEqual(verifyModel(m), []);
    assertSameOutputs(before, await run(m), 'identity');
  });
});

describe('remove-dropout', () => {
  function dropoutModel(opset: number, training?: boolean, useMask = false): Model {
    const t = tiny(opset);
    const ins: (Value | undefined)[] = [t.x];
    if (training !== undefined) {
      const ratio = t.g.addInitializer(
        new Value('ratio', tensorType(DataType.FLOAT, [])),
        Tensor.scalarFloat(0.5),
      );
      const [mode] = t.node('Constant', []);
      mode!.producer!.attributes.set(
        'value',
        tensorAttr(Tensor.fromArray(DataType.BOOL, [], [training ? 1 : 0])),
      );
      ins.push(ratio, mode);
    }
    const [out, mask] = t.node('Dropout', ins, 2);
    if (opset < 12) out!.producer!.attributes.set('ratio', { type: AttributeType.FLOAT, value: 0.3 });
    const outs = [t.node('Relu', [out!])[0]!];
    if (useMask) {
      mask!.type = tensorType(DataType.BOOL, ['N', 3]);
      outs.push(mask!);
    }
    return t.model(outs);
  }

  it('removes inference Dropout across opsets and keeps training or mask-using ones', async () => {
    for (const [opset, training, mask, expected] of [
      [13, undefined, false, 1],
      [13, false, false, 1],
      [13, true, false, 0],
      [10, undefined, false, 1],
      [13, undefined, true, 0],
    ] as const) {
      const m = dropoutModel(opset, training, mask);
      const before = training ? undefined : await run(m);
      assert.equal(
        removeDropout.run(m).removed,
        expected,
        `opset ${opset} training ${training} mask ${mask}`,
      );
      assert.deepEqual(verifyModel(m), []);
      if (before) assertSameOutputs(before, await run(m), `dropout opset ${opset}`);
    }
    const old = dropoutModel(6);
    old.graph.nodes[0]!.attributes.set('is_test', intAttr(0));
    assert.equal(removeDropout.run(old).removed, 0, 'opset 6 training-mode Dropout stays');
  });
});

describe('dead code, folding details, topological order', () => {
  function subgraphModel(returnDirectly: boolean): Model {
    const t = tiny();
    const [used] = t.node('Neg', [t.x], 1, 'feeds_branch');
    t.node('Sigmoid', [t.x], 1, 'dead');
    const [returned] = t.node('Sqrt', [t.x], 1, 'returned_by_branch');
    const branch = (op: string): Graph => {
      const b = new Graph();
      b.name = `${op}_branch`;
      if (op === 'Abs' && returnDirectly) {
        b.outputs.push(returned!); // ONNX allows returning an outer value (onnxruntime refuses to load it)
        return b;
      }
      const o = new Value(`${op}_branch_out`, tensorType(DataType.FLOAT, ['N', 3]));
      b.addNode(new Node(op, [used!], [o], `${op}_in_branch`));
      b.outputs.push(o);
      return b;
    };
    const cond = t.g.addInitializer(
      new Value('cond', tensorType(DataType.BOOL, [])),
      Tensor.fromArray(DataType.BOOL, [], [1]),
    );
    const [out] = t.node('If', [cond], 1, 'if');
    out!.producer!.attributes.set('then_branch', { type: AttributeType.GRAPH, value: branch('Relu') });
    out!.producer!.attributes.set('else_branch', { type: AttributeType.GRAPH, value: branch('Abs') });
    for (const g of out!.producer!.subgraphs()) g.parent = t.g;
    return t.model([out!]);
  }

  it('keeps values read inside a subgraph and removes what reaches no output', async () => {
    const m = subgraphModel(false);
    const before = await run(m);
    assert.equal(removeDeadNodes.run(m).removed, 2);
    assert.deepEqual(
      m.graph.nodes.map((n) => n.name),
      ['feeds_branch', 'if'],
    );
    assert.deepEqual(verifyModel(m), []);
    assertSameOutputs(before, await run(m), 'subgraph');
  });

  it('keeps a value a subgraph returns directly, through every cleanup pass', () => {
    const m = subgraphModel(true);
    const summary = cleanupPipeline(new PassManager({ debug: true }), m);
    assert.equal(summary.deadNodes, 1);
    assert.deepEqual(
      m.graph.nodes.map((n) => n.name),
      ['feeds_branch', 'returned_by_branch', 'if'],
    );
    assert.deepEqual(verifyModel(m), []);
  });

  it('folds integer and float constant chains exactly as onnxruntime computes them', async () => {
    const t = tiny();
    const init = (name: string, tensor: Tensor): Value =>
      t.g.addInitializer(new Value(name, tensorType(tensor.dataType, [...tensor.dims])), tensor);
    const a = init('a', Tensor.int64([-7, 9, 5, -3]));
    const two = init('two', Tensor.int64([2], []));
    const [q] = t.node('Div', [a, two]); // truncates toward zero: [-3, 4, 2, -1]
    const [rev] = t.node('Slice', [
      q!,
      init('s', Tensor.int64([-1])),
      init('e', Tensor.int64([-9223372036854775807n])),
      init('ax', Tensor.int64([0])),
      init('st', Tensor.int64([-1])),
    ]);
    const [f] = t.node('Cast', [rev!]);
    f!.producer!.attributes.set('to', intAttr(DataType.FLOAT));
    const third = init('third', Tensor.fromArray(DataType.FLOAT, [], [3]));
    const [scaled] = t.node('Div', [f!, third]);
    const [root] = t.node('Sqrt', [t.node('Abs', [scaled!])[0]!]);
    const [tail] = t.node('Slice', [root!, init('s1', Tensor.int64([1])), init('e1', Tensor.int64([4]))]);
    const [y] = t.node('Mul', [t.x, tail!]);
    const m = t.model([y!]);
    const before = await run(m);
    const result = foldConstants.run(m, undefined);
    assert.equal(result.initializers, 1);
    assert.deepEqual(
      m.graph.nodes.map((n) => n.opType),
      ['Mul'],
    );
    assertSameOutputs(before, await run(m), 'folded chain');
  });

  it('leaves the Shape of a batch-dependent value alone', () => {
    const t = tiny();
    const [s] = t.node('Shape', [t.x]);
    const [s2] = t.node('Shape', [
      t.node('Reshape', [
        t.x,
        t.g.addInitializer(new Value('r', tensorType(DataType.INT64, [2])), Tensor.int64([3, -1])),
      ])[0]!,
    ]);
    s!.type = tensorType(DataType.INT64, [2]);
    const [c] = t.node('Concat', [s!, s2!]);
    c!.producer!.attributes.set('axis', intAttr(0));
    c!.type = tensorType(DataType.INT64, [4]);
    const m = t.model([c!]);
    assert.equal(foldConstants.run(m, undefined).folded, 0);
  });

  it('sorts an unsorted graph and keeps a sorted one as it is', () => {
    const m = loadModel(fixture('senet.onnx'));
    const sorted = m.graph.nodes.map((n) => n.name);
    assert.equal(topoSort.run(m).moved, 0);
    assert.deepEqual(
      m.graph.nodes.map((n) => n.name),
      sorted,
    );
    m.graph.nodes.reverse();
    assert.notDeepEqual(verifyModel(m), []);
    assert.ok(topoSort.run(m).moved > 0);
    assert.deepEqual(verifyModel(m), []);
  });
});
