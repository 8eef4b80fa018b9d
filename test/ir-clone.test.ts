import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cloneModel, intAttr, loadModel, serializeModel } from '../src/ir/index.js';
import { removeDeadNodes, removeIdentity, topoSort, PassManager } from '../src/passes/index.js';
import { FIXTURE_MODELS, fixture } from './helpers.js';

describe('Model.clone', () => {
  for (const file of FIXTURE_MODELS) {
    test(`${file}: the clone serialises to the same bytes and shares no IR object`, () => {
      const model = loadModel(fixture(`${file}.onnx`));
      const before = serializeModel(model);
      const { model: copy, nodes, values } = cloneModel(model);
      assert.deepEqual(serializeModel(copy), before);
      assert.equal(nodes.size, model.graph.nodes.length);
      for (const [a, b] of nodes) assert.notEqual(a, b);
      for (const [a, b] of values) {
        assert.notEqual(a, b);
        assert.equal(a.name, b.name);
        if (a.initializer) assert.notEqual(a.initializer, b.initializer);
      }
      // Every use list of the copy points into the copy.
      const copyNodes = new Set(copy.graph.nodes);
      for (const v of values.values()) for (const u of v.uses) assert.ok(copyNodes.has(u.node));
    });
  }

  test('changing the clone (weights, attributes, nodes, outputs) leaves the original byte-identical', () => {
    const model = loadModel(fixture('resnet_a.onnx'));
    const before = serializeModel(model);
    const copy = model.clone();
    const conv = copy.graph.nodes.find((n) => n.opType === 'Conv')!;
    const w = conv.inputs[1]!.initializer!;
    w.setData(new Float32Array(w.size).fill(3));
    conv.attributes.set('group', intAttr(1));
    copy.graph.outputs.push(conv.outputs[0]!);
    copy.setMetadata('x', 'y');
    const relu = copy.graph.nodes.find((n) => n.opType === 'Relu')!;
    copy.graph.replaceAllUsesWith(relu.outputs[0]!, relu.inputs[0]!);
    copy.graph.removeNode(relu);
    assert.deepEqual(serializeModel(model), before);
    assert.notDeepEqual(serializeModel(copy), before);
  });
});

describe('PassManager', () => {
  test('runToFixedPoint stops after the first round that changes nothing', () => {
    const model = loadModel(fixture('resnet_a.onnx'));
    const pm = new PassManager();
    const rounds = pm.runToFixedPoint([removeIdentity, removeDeadNodes, topoSort], model);
    assert.ok(rounds >= 1);
    assert.equal(pm.runToFixedPoint([removeIdentity, removeDeadNodes, topoSort], model), 1);
  });

  test('a pass that always reports a change is stopped with an error', () => {
    const model = loadModel(fixture('resnet_b.onnx'));
    const restless = {
      name: 'restless',
      description: 'claims a change every time',
      reads: [],
      changes: ['nothing really'],
      run: () => ({ modified: true }),
    };
    assert.throws(() => new PassManager().runToFixedPoint([restless], model, 3), /after 3 rounds/);
  });

  test('debug mode verifies after a modifying pass and names it', () => {
    const model = loadModel(fixture('resnet_b.onnx'));
    const breaking = {
      name: 'breaking',
      description: 'drops a node whose output is used',
      reads: [],
      changes: ['graph.nodes'],
      run: (m: typeof model) => {
        const n = m.graph.nodes.find((x) => x.outputs[0]!.uses.length > 0)!;
        m.graph.nodes.splice(m.graph.nodes.indexOf(n), 1);
        return { modified: true };
      },
    };
    assert.throws(() => new PassManager({ debug: true }).run(breaking, model), /breaking/);
  });
});
