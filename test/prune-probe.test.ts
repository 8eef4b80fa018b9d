import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DataType, Node, Value, intAttr, loadModel, tensorType, type Model } from '../src/ir/index.js';
import { pruneModel } from '../src/prune/index.js';
import { probeModel, staticProbe } from '../src/shapes/probe.js';
import { FIXTURE_MODELS, fixture, needsShared, sharedModel } from './helpers.js';

const clamp = (x: number): number => Math.max(Math.min(x, Number.MAX_SAFE_INTEGER), -Number.MAX_SAFE_INTEGER);

/** The static probe must say what one onnxruntime run says, for every value it reports. */
async function checkAgainstOnnxruntime(model: Model): Promise<void> {
  const { probe, missing } = staticProbe(model);
  assert.equal(missing, undefined);
  const ort = await probeModel(model);
  for (const n of model.graph.nodes)
    for (const o of n.outputs) {
      if (!o.name || !ort.dims.has(o)) continue;
      assert.deepEqual(probe.dims.get(o), ort.dims.get(o), `dims of ${o.name}`);
      if (o.uses.length && ort.ints.has(o) && o.uses.some((u) => u.index > 0))
        // INT64_MAX/MIN (Slice "to the end") are clamped to the largest safe integers by the static analysis.
        assert.deepEqual(probe.ints.get(o)?.map(clamp), ort.ints.get(o)?.map(clamp), `values of ${o.name}`);
    }
}

/** Routes every Pad's computed amounts through Cast(float) → Round → Cast(int64): same values, but Round is not in the constant evaluator. */
function obscurePads(model: Model): number {
  const g = model.graph;
  let count = 0;
  for (const pad of g.nodes.filter((n) => n.opType === 'Pad' && n.inputs[1] && !n.inputs[1].initializer)) {
    const src = pad.inputs[1]!;
    const n = src.shape?.[0] ?? 8;
    const asFloat = new Value(g.uniqueName(`${src.name}_f`), tensorType(DataType.FLOAT, [n]));
    const rounded = new Value(g.uniqueName(`${src.name}_r`), tensorType(DataType.FLOAT, [n]));
    const back = new Value(g.uniqueName(`${src.name}_i`), tensorType(DataType.INT64, [n]));
    const toFloat = new Node('Cast', [src], [asFloat], g.uniqueName('obscure_cast_f'));
    toFloat.attributes.set('to', intAttr(DataType.FLOAT));
    const toInt = new Node('Cast', [rounded], [back], g.uniqueName('obscure_cast_i'));
    toInt.attributes.set('to', intAttr(DataType.INT64));
    g.addNode(toFloat, pad);
    g.addNode(new Node('Round', [asFloat], [rounded], g.uniqueName('obscure_round')), pad);
    g.addNode(toInt, pad);
    pad.setInput(1, back);
    count++;
  }
  return count;
}

describe('prune: static probe', () => {
  for (const name of FIXTURE_MODELS)
    it(`${name}: static shapes and shape values equal one onnxruntime run`, async () => {
      await checkAgainstOnnxruntime(loadModel(fixture(`${name}.onnx`)));
      await checkAgainstOnnxruntime(loadModel(fixture(`${name}-bnfolded.onnx`)));
    });

  it(
    'shared ResNet-56: the computed option-A pads are known statically',
    needsShared('models/resnet56-cifar10.onnx'),
    async () => {
      const model = loadModel(sharedModel('resnet56-cifar10.onnx'));
      await checkAgainstOnnxruntime(model);
      const pads = model.graph.nodes
        .filter((n) => n.opType === 'Pad')
        .map((n) => staticProbe(model).probe.ints.get(n.inputs[1]!));
      assert.ok(pads.length >= 2);
      for (const p of pads) assert.equal(p?.length, 8);
    },
  );

  it('falls back to onnxruntime, with a warning, when a pads computation cannot be evaluated', async () => {
    const plain = loadModel(fixture('resnet_a.onnx'));
    const obscured = loadModel(fixture('resnet_a.onnx'));
    assert.ok(obscurePads(obscured) > 0);
    assert.match(staticProbe(obscured).missing ?? '', /input 1 of Pad/);
    const warnings: string[] = [];
    const a = await pruneModel(plain, { flops: 0.5 });
    const b = await pruneModel(obscured, { flops: 0.5, warn: (m) => warnings.push(m) });
    assert.ok(
      warnings.some((w) => /probing the model in onnxruntime/.test(w) && /Pad/.test(w)),
      warnings.join('\n'),
    );
    assert.ok(!a.report.warnings.some((w) => /onnxruntime/.test(w)));
    assert.deepEqual(b.plan.groups, a.plan.groups);
    assert.deepEqual(b.report.pruned, a.report.pruned);
  });
});
