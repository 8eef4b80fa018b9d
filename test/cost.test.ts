import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { countCost, MAC_OPS, type CostReport } from '../src/analysis/cost.js';
import { UserError } from '../src/errors.js';
import { intAttr, intsAttr } from '../src/ir/attribute.js';
import { DataType } from '../src/ir/data-type.js';
import { Graph, Node, Value } from '../src/ir/graph.js';
import { loadModel } from '../src/ir/load.js';
import { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { tensorType } from '../src/ir/types.js';
import { FIXTURE_MODELS, fixture, needsShared, sharedModel } from './helpers.js';

/** The parts of fixtures/<name>.ref.json this test reads: counts from PyTorch forward hooks. */
interface RefLayer {
  name: string;
  type: 'Conv2d' | 'Linear';
  macs: number;
  params: number;
  bias: boolean;
}
interface Ref {
  inputShape: number[];
  macs: number;
  params: { trainable: number; convLinear: number; bnAffine: number; bnRunningStats: number };
  layers: RefLayer[];
}

function readRef(file: string): Ref {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Ref;
}

/** Conv/Gemm/MatMul entries, which correspond one to one, in order, to torch's Conv2d/Linear hooks. */
function macLayers(cost: CostReport): CostReport['perNode'] {
  return cost.perNode.filter((l) => MAC_OPS.includes(l.opType));
}

function assertLayerMacs(cost: CostReport, ref: Ref): void {
  const layers = macLayers(cost);
  assert.deepEqual(
    layers.map((l) => l.macs),
    ref.layers.map((l) => l.macs),
    'per-layer MACs, in order',
  );
  assert.deepEqual(
    layers.map((l) => l.outChannels),
    ref.layers.map((l) => (l as unknown as { outShape: number[] }).outShape[0]),
    'per-layer output channels',
  );
}

/**
 * Params of the BN-folded export, derived from the BN-kept file without the cost model: every BN that is the
 * only consumer of a Conv is folded (its gamma and beta go away) and its conv gains a bias of the BN's width,
 * unless the conv had one already. Other BNs (DenseNet's pre-activation BNs after Concat, or after a conv whose
 * output also feeds a Concat) stay.
 */
function expectedFoldedParams(bnKept: Model, ref: Ref): { params: number; remainingBn: number } {
  const biasOf = new Map(ref.layers.map((l) => [`${l.name}.weight`, l.bias]));
  let params = ref.params.trainable;
  let remainingBn = 0;
  for (const node of bnKept.graph.nodes) {
    if (node.opType !== 'BatchNormalization') continue;
    const producer = node.inputs[0]?.producer;
    if (producer?.opType !== 'Conv' || producer.output(0).uses.length !== 1) {
      remainingBn++;
      continue;
    }
    const width = node.input(1).initializer!.dims[0]!;
    assert.equal(node.input(2).initializer!.dims[0], width);
    params -= 2 * width;
    const hadBias = biasOf.get(producer.input(1).name);
    assert.notEqual(hadBias, undefined, `ref layer for ${producer.input(1).name}`);
    if (!hadBias) params += width;
  }
  return { params, remainingBn };
}

describe('cost model on the fixtures (PyTorch hook counts)', () => {
  for (const name of FIXTURE_MODELS) {
    const ref = readRef(fixture(`${name}.ref.json`));

    it(`${name}: BN kept — MACs, params, buffers and every layer equal the reference`, () => {
      const model = loadModel(fixture(`${name}.onnx`));
      const cost = countCost(model);
      assert.equal(cost.totalMacs, ref.macs);
      assert.equal(cost.totalParams, ref.params.trainable);
      assert.equal(cost.convLinearParams, ref.params.convLinear);
      assert.equal(cost.bnAffineParams, ref.params.bnAffine);
      assert.equal(cost.totalBuffers, ref.params.bnRunningStats);
      assert.deepEqual(cost.inputShapes, { input: ref.inputShape });
      assertLayerMacs(cost, ref);
      const layers = macLayers(cost);
      // The BN-kept export keeps torch's parameter names, so layers match by name as well as by order.
      assert.deepEqual(
        layers.map((l) => l.weight),
        ref.layers.map((l) => `${l.name}.weight`),
      );
      assert.deepEqual(
        layers.map((l) => l.params),
        ref.layers.map((l) => l.params),
      );
    });

    it(`${name}: BN folded — same MACs per layer, params of the folded model`, () => {
      const folded = countCost(loadModel(fixture(`${name}-bnfolded.onnx`)));
      const bnKept = loadModel(fixture(`${name}.onnx`));
      const expected = expectedFoldedParams(bnKept, ref);
      assert.equal(folded.totalMacs, ref.macs);
      assertLayerMacs(folded, ref);
      assert.equal(folded.totalParams, expected.params);
      assert.equal(
        folded.perNode.filter((l) => l.opType === 'BatchNormalization').length,
        expected.remainingBn,
      );
    });
  }

  it('counts per image: the batch dim of a given input shape is taken as 1', () => {
    const ref = readRef(fixture('resnet_b.ref.json'));
    const cost = countCost(loadModel(fixture('resnet_b.onnx')), { inputShape: [8, 3, 32, 32] });
    assert.equal(cost.totalMacs, ref.macs);
    assert.deepEqual(cost.inputShapes, { input: [1, 3, 32, 32] });
  });

  it('counts at a larger input: conv MACs scale with the output area, the Linear does not', () => {
    const ref = readRef(fixture('resnet_b.ref.json'));
    const expected = ref.layers.reduce((sum, l) => sum + (l.type === 'Conv2d' ? 4 * l.macs : l.macs), 0);
    const cost = countCost(loadModel(fixture('resnet_b.onnx')), { inputShape: [1, 3, 64, 64] });
    assert.equal(cost.totalMacs, expected);
    assert.equal(cost.totalParams, ref.params.trainable);
  });

  it('names the input when its spatial dims are unknown and no shape is given', () => {
    const model = loadModel(fixture('resnet_b.onnx'));
    model.graph.inputs[0]!.type = tensorType(1, ['N', 3, 'H', null]);
    assert.throws(
      () => countCost(model),
      (e: unknown) => e instanceof UserError && /input 'input'/.test(e.message),
    );
    const ref = readRef(fixture('resnet_b.ref.json'));
    assert.equal(countCost(model, { inputShape: [1, 3, 32, 32] }).totalMacs, ref.macs);
  });

  it('rejects an input shape of the wrong rank', () => {
    const model = loadModel(fixture('resnet_b.onnx'));
    assert.throws(() => countCost(model, { inputShape: [3, 32, 32] }), UserError);
  });
});

describe('cost model on torchvision models at 224x224 (structure only)', () => {
  for (const name of ['resnet18', 'resnet50', 'mobilenet_v2']) {
    it(`${name}: MACs and every layer equal the reference; folded params without tensor data`, () => {
      const ref = readRef(fixture(`torchvision/${name}.ref.json`));
      const cost = countCost(loadModel(fixture(`torchvision/${name}.onnx`)));
      assert.equal(cost.totalMacs, ref.macs);
      assertLayerMacs(cost, ref);
      // Default eval export: every BN follows a bias-free conv, which takes over a bias of the BN's width.
      assert.equal(cost.totalParams, ref.params.trainable - ref.params.bnAffine / 2);
      assert.equal(cost.totalBuffers, 0);
    });
  }

  it('the published totals: ResNet-50 4,089,184,256, MobileNetV2 300,774,272, ResNet-18 1,814,073,344', () => {
    const macs = (name: string): number =>
      countCost(loadModel(fixture(`torchvision/${name}.onnx`))).totalMacs;
    assert.equal(macs('resnet50'), 4_089_184_256);
    assert.equal(macs('mobilenet_v2'), 300_774_272);
    assert.equal(macs('resnet18'), 1_814_073_344);
  });
});

describe('cost model on the shared CIFAR-10 ResNets (figures of ../shared/models/README.md)', () => {
  const cases = [
    { file: 'resnet20-cifar10.onnx', macs: 40_551_040, params: 269_722, buffers: 1_376 },
    { file: 'resnet32-cifar10.onnx', macs: 68_862_592, params: 464_154, buffers: 2_272 },
    { file: 'resnet44-cifar10.onnx', macs: 97_174_144, params: 658_586, buffers: 3_168 },
    { file: 'resnet56-cifar10.onnx', macs: 125_485_696, params: 853_018, buffers: 4_064 },
    // Folded: 848,954 conv+linear weights plus 2,032 conv biases.
    { file: 'resnet56-cifar10-bnfolded.onnx', macs: 125_485_696, params: 850_986, buffers: 0 },
  ];
  for (const c of cases) {
    it(c.file, needsShared(`models/${c.file}`), () => {
      const cost = countCost(loadModel(sharedModel(c.file)));
      assert.equal(cost.totalMacs, c.macs);
      assert.equal(cost.totalParams, c.params);
      assert.equal(cost.totalBuffers, c.buffers);
    });
  }

  it(
    'resnet20: every layer equals fixtures/resnet20.ref.json',
    needsShared('models/resnet20-cifar10.onnx'),
    () => {
      const ref = readRef(fixture('resnet20.ref.json'));
      const cost = countCost(loadModel(sharedModel('resnet20-cifar10.onnx')));
      assertLayerMacs(cost, ref);
      assert.deepEqual(
        macLayers(cost).map((l) => l.weight),
        ref.layers.map((l) => `${l.name}.weight`),
      );
    },
  );
});

/** x[N,4,5,5] -> ConvTranspose(4->2, 3x3, stride 2) -> Conv(2->6, 3x3, group 2, pad 1) -> Reshape [0,6,121] -> MatMul W[121,8] -> Add b[8] */
function syntheticModel(): Model {
  const g = new Graph();
  const value = (name: string): Value => new Value(name);
  const weight = (name: string, dims: number[]): Value => {
    const v = value(name);
    g.addInitializer(
      v,
      Tensor.fromArray(DataType.FLOAT, dims, new Float32Array(dims.reduce((a, b) => a * b, 1))),
    );
    return v;
  };
  const x = new Value('x', tensorType(DataType.FLOAT, ['N', 4, 5, 5]));
  g.inputs.push(x);
  const [y, z, r, m, out] = ['y', 'z', 'r', 'm', 'out'].map(value) as [Value, Value, Value, Value, Value];
  const deconv = g.addNode(new Node('ConvTranspose', [x, weight('up.weight', [4, 2, 3, 3])], [y], 'up'));
  deconv.attributes.set('strides', intsAttr([2, 2]));
  const conv = g.addNode(new Node('Conv', [y, weight('grouped.weight', [6, 1, 3, 3])], [z], 'grouped'));
  conv.attributes.set('group', intAttr(2));
  conv.attributes.set('pads', intsAttr([1, 1, 1, 1]));
  const shape = value('shape');
  g.addInitializer(shape, Tensor.int64([0, 6, 121]));
  g.addNode(new Node('Reshape', [z, shape], [r], 'flatten'));
  g.addNode(new Node('MatMul', [r, weight('fc.weight', [121, 8])], [m], 'fc'));
  g.addNode(new Node('Add', [m, weight('fc.bias', [8])], [out], 'fc_bias'));
  g.outputs.push(out);
  const model = new Model(g);
  model.opsetImports = [{ domain: '', version: 13 }];
  return model;
}

describe('cost model formulas on a synthetic graph', () => {
  it('ConvTranspose counts per input pixel, grouped Conv per group, MatMul + Add as a Linear with bias', () => {
    const cost = countCost(syntheticModel());
    const byName = Object.fromEntries(cost.perNode.map((l) => [l.name, l]));
    // ConvTranspose: Cin * Hin * Win * (Cout/group) * kh * kw; output 2x11x11.
    assert.equal(byName.up!.macs, 4 * 5 * 5 * 2 * 3 * 3);
    assert.equal(byName.up!.outChannels, 2);
    assert.equal(byName.up!.params, 4 * 2 * 3 * 3);
    // Conv with group 2: Cout * Hout * Wout * (Cin/group) * kh * kw.
    assert.equal(byName.grouped!.macs, 6 * 11 * 11 * 1 * 3 * 3);
    assert.equal(byName.grouped!.params, 6 * 1 * 3 * 3);
    // MatMul [1,6,121] x [121,8]: M * K * N per image; the Add's constant is its bias (params, not MACs).
    assert.equal(byName.fc!.macs, 6 * 121 * 8);
    assert.equal(byName.fc!.params, 121 * 8 + 8);
    assert.equal(byName.fc!.outChannels, 8);
    assert.equal(cost.totalMacs, 1800 + 6534 + 5808);
    assert.deepEqual(Object.keys(cost.macsByOp).sort(), ['Conv', 'ConvTranspose', 'MatMul']);
  });

  it('leaves the model as it was: declared shapes keep the symbolic batch', () => {
    const model = loadModel(fixture('resnet_b.onnx'));
    const before = [...model.graph.inputs, ...model.graph.outputs].map((v) => JSON.stringify(v.type));
    countCost(model, { inputShape: [1, 3, 64, 64] });
    assert.deepEqual(
      [...model.graph.inputs, ...model.graph.outputs].map((v) => JSON.stringify(v.type)),
      before,
    );
    assert.ok(
      model.graph.nodes.filter((n) => n.opType === 'Conv').every((n) => n.output(0).type === undefined),
    );
  });
});
