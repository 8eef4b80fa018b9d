/**
 * Transformer exports (fixtures/transformers, made by fixtures/make_transformers.py): onnxruntime equals the
 * torch references, token ids are not channel data, embeddings (Gather of a table) start the hidden width on
 * the last axis, and what the analysis can prune (today the MLP widths; attention heads are issue 30) prunes to
 * a model equal to the masked original. Attention's MACs count in the budget.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { countCostProbed } from '../src/analysis/cost.js';
import { serializeModel, type Model } from '../src/ir/index.js';
import { cleanupPipeline } from '../src/passes/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import { analyzeModel, pruneModel } from '../src/prune/index.js';
import { randomInputs } from '../src/shapes/probe.js';
import { fixture } from './helpers.js';
import { load, maskRemovedChannels, maskRemovedInputs, maxAbsDiff } from './prune-helpers.js';

const SEQ = 16;
const BERT_SHAPES = { input_ids: [1, SEQ], token_type_ids: [1, SEQ] };

function loadClean(name: string): Model {
  const model = load(fixture(`transformers/${name}`));
  cleanupPipeline(new PassManager(), model);
  return model;
}

async function run(model: Model, batch: number): Promise<Float32Array[]> {
  const dims = new Map(Object.entries(BERT_SHAPES).map(([k, d]) => [k, [batch, ...d.slice(1)]]));
  const session = await ort.InferenceSession.create(serializeModel(model));
  try {
    const out = await session.run(randomInputs(model, dims, 5));
    return model.graph.outputs.map((v) => out[v.name]!.data as Float32Array);
  } finally {
    await session.release();
  }
}

describe('transformers: a BERT-style encoder with int64 token ids', () => {
  for (const file of ['bert.onnx', 'bert-opset17.onnx']) {
    it(`${file}: ids are not channels; embeddings start the hidden width on the last axis; MACs include attention`, async () => {
      const model = loadClean(file);
      const analysis = await analyzeModel(model, BERT_SHAPES);
      assert.deepEqual(analysis.costMismatches, []);
      for (const s of analysis.spaces)
        assert.ok(!['input_ids', 'token_type_ids'].includes(s.value.name), s.value.name);
      const embedding = model.graph.nodes.find(
        (n) => n.opType === 'Gather' && n.inputs[1]?.name === 'input_ids',
      )!;
      const space = analysis.spaceOf.get(embedding.outputs[0]!)!;
      assert.equal(space.axis, 2);
      assert.equal(space.size, 64);
      const ref = JSON.parse(fs.readFileSync(fixture('transformers/bert.ref.json'), 'utf8')) as {
        macs: number;
      };
      assert.equal((await countCostProbed(model, { inputShape: BERT_SHAPES })).totalMacs, ref.macs);
    });
  }

  it('bert.onnx: the MLP widths prune, and the pruned encoder equals the masked original', async () => {
    const { model: pruned, plan } = await pruneModel(loadClean('bert.onnx'), {
      flops: 0.9,
      inputShapes: BERT_SHAPES,
      roundTo: 1,
    });
    assert.ok(
      plan.groups.some((g) => g.keep.length < g.channels),
      'the plan removes channels',
    );
    const masked = loadClean('bert.onnx');
    const analysis = await analyzeModel(masked, BERT_SHAPES);
    const keep = plan.groups.map((g) => {
      const m = new Uint8Array(g.channels);
      for (const c of g.keep) m[c] = 1;
      return m;
    });
    maskRemovedChannels(analysis, keep);
    maskRemovedInputs(analysis, keep);
    const diff = maxAbsDiff(await run(masked, 2), await run(pruned, 2));
    assert.ok(diff <= 1e-4, `pruned differs from the masked original by ${diff}`);
  });
});
