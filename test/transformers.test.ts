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
import { frozenBreakdown } from '../src/analysis/frozen-share.js';
import { serializeModel, type Model } from '../src/ir/index.js';
import { cleanupPipeline } from '../src/passes/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import { analyzeModel, applyPlanPass, pruneModel } from '../src/prune/index.js';
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
  return runShapes(model, BERT_SHAPES, batch);
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

/** The group whose classes are the attention heads of `layer` (its members include the head axis spaces). */
function headGroups(analysis: Awaited<ReturnType<typeof analyzeModel>>): number[] {
  return analysis.groups
    .filter((g) => g.frozen.length === 0 && g.spaces.some((s) => s.value.producer?.opType === 'Softmax'))
    .map((g) => g.id);
}

async function runShapes(
  model: Model,
  shapes: Record<string, number[]>,
  batch: number,
): Promise<Float32Array[]> {
  const dims = new Map(Object.entries(shapes).map(([k, d]) => [k, [batch, ...d.slice(1)]]));
  const session = await ort.InferenceSession.create(serializeModel(model));
  try {
    const out = await session.run(randomInputs(model, dims, 5));
    return model.graph.outputs.map((v) => out[v.name]!.data as Float32Array);
  } finally {
    await session.release();
  }
}

describe('transformers: attention heads as channel groups (torch MultiheadAttention export)', () => {
  const cases: [string, Record<string, number[]>][] = [
    ['vit.onnx', { input: [1, 3, 32, 32] }],
    ['vit-opset17.onnx', { input: [1, 3, 32, 32] }],
    ['bert.onnx', BERT_SHAPES],
    ['bert-opset17.onnx', BERT_SHAPES],
    ['bert_mask.onnx', { ...BERT_SHAPES, attention_mask: [1, SEQ] }],
  ];
  for (const [file, shapes] of cases) {
    it(`${file}: every layer's heads form one unfrozen group; a pruned model equals the masked original`, async () => {
      const analysis = await analyzeModel(loadClean(file), shapes);
      const heads = headGroups(analysis);
      assert.equal(heads.length, 2, 'one head group per encoder layer');
      for (const id of heads) assert.equal(analysis.groups[id]!.size, 4);
      // Heads 0 and 2 of every layer go, nothing else: the rewrite alone, without a width search.
      const keep = analysis.groups.map((g) => {
        const m = new Uint8Array(g.size).fill(1);
        if (heads.includes(g.id)) m[0] = m[2] = 0;
        return m;
      });
      const { model: pruned } = new PassManager().run(applyPlanPass, analysis.model, { analysis, keep });
      const masked = loadClean(file);
      const fresh = await analyzeModel(masked, shapes);
      maskRemovedChannels(fresh, keep);
      maskRemovedInputs(fresh, keep);
      // Batch 3 and (BERT) another sequence length: the rewritten shapes must hold at sizes not probed.
      const at = file.startsWith('bert')
        ? Object.fromEntries(Object.keys(shapes).map((k) => [k, [1, 11]]))
        : shapes;
      const diff = maxAbsDiff(await runShapes(masked, at, 3), await runShapes(pruned, at, 3));
      assert.ok(diff <= 1e-4, `pruned differs from the masked original by ${diff}`);
    });
  }

  it('vit.onnx: keeping every head gives bit-identical outputs', async () => {
    const original = load(fixture('transformers/vit.onnx'));
    const { model: kept } = await pruneModel(loadClean('vit.onnx'), { flops: 1, roundTo: 1 });
    const a = await runShapes(original, { input: [1, 3, 32, 32] }, 2);
    const b = await runShapes(kept, { input: [1, 3, 32, 32] }, 2);
    a.forEach((x, i) => assert.ok(Buffer.from(x.buffer).equals(Buffer.from(b[i]!.buffer)), 'outputs differ'));
  });
});

describe('transformers: Swin window attention (q, k, v stacked as [3, H, D], relative position bias per head)', () => {
  for (const file of ['swin.onnx', 'swin-opset17.onnx']) {
    it(`${file}: removing one head in every block equals masking it, shifted windows included`, async () => {
      const shapes = { input: [1, 3, 32, 32] };
      const analysis = await analyzeModel(loadClean(file), shapes);
      const heads = headGroups(analysis);
      assert.equal(heads.length, 4, 'one head group per Swin block');
      // Keep everything but the last head of every block: the rewrite alone, without a width search.
      const keep = analysis.groups.map((g) => {
        const m = new Uint8Array(g.size).fill(1);
        if (heads.includes(g.id)) m[g.size - 1] = 0;
        return m;
      });
      const { model: pruned } = new PassManager().run(applyPlanPass, analysis.model, { analysis, keep });
      const masked = loadClean(file);
      const fresh = await analyzeModel(masked, shapes);
      maskRemovedChannels(fresh, keep);
      maskRemovedInputs(fresh, keep);
      const diff = maxAbsDiff(await runShapes(masked, shapes, 3), await runShapes(pruned, shapes, 3));
      assert.ok(diff <= 1e-4, `pruned differs from the masked original by ${diff}`);
    });
  }
});

describe('transformers: the embedding width (residual stream) as one group', () => {
  const cases: [string, Record<string, number[]>, Record<string, number[]>][] = [
    ['vit.onnx', { input: [1, 3, 32, 32] }, { input: [1, 3, 32, 32] }],
    ['vit-opset17.onnx', { input: [1, 3, 32, 32] }, { input: [1, 3, 32, 32] }],
    ['bert.onnx', BERT_SHAPES, { input_ids: [1, 11], token_type_ids: [1, 11] }],
    ['bert-opset17.onnx', BERT_SHAPES, { input_ids: [1, 11], token_type_ids: [1, 11] }],
    ['swin.onnx', { input: [1, 3, 32, 32] }, { input: [1, 3, 32, 32] }],
  ];
  for (const [file, shapes, other] of cases) {
    it(`${file}: at 30% of the MACs the stream narrows through embeddings, LayerNorms and residual Adds`, async () => {
      const original = loadClean(file);
      const before = await runShapes(original, other, 3);
      const analysis = await analyzeModel(loadClean(file), shapes);
      // The stream: the unfrozen group with the most members (every LayerNorm and residual Add is one).
      const stream = [...analysis.groups]
        .filter((g) => g.frozen.length === 0)
        .sort((a, b) => b.spaces.length - a.spaces.length)[0]!;
      assert.ok(stream.spaces.length > 20, `${stream.spaces.length} members`);
      const {
        model: pruned,
        plan,
        report,
      } = await pruneModel(loadClean(file), {
        flops: 0.3,
        inputShapes: shapes,
        roundTo: 1,
      });
      const kept = plan.groups.find((g) => g.id === stream.id)!;
      assert.ok(kept.keep.length < kept.channels, 'the stream is narrower');
      const counted = (await countCostProbed(pruned, { inputShape: shapes })).totalMacs;
      assert.equal(report.pruned.macs, counted);
      assert.ok(counted / report.original.macs <= 0.3 && counted / report.original.macs > 0.29);
      // It runs at a batch and (BERT) a sequence length it was not probed at, with the same output shapes.
      const after = await runShapes(pruned, other, 3);
      assert.deepEqual(
        after.map((a) => a.length),
        before.map((b) => b.length),
      );
      assert.ok(after.every((a) => a.every(Number.isFinite)));
    });
  }
});

describe('transformers: what cannot shrink', () => {
  const cases: [string, Record<string, number[]>][] = [
    ['vit.onnx', { input: [1, 3, 32, 32] }],
    ['swin.onnx', { input: [1, 3, 32, 32] }],
    ['bert.onnx', BERT_SHAPES],
    ['bert_mask.onnx', { ...BERT_SHAPES, attention_mask: [1, SEQ] }],
  ];
  for (const [file, shapes] of cases) {
    it(`${file}: no group frozen, and under 1% of the MACs in layers whose filters cannot shrink (the classifier)`, async () => {
      const model = loadClean(file);
      const analysis = await analyzeModel(model, shapes);
      const total = (await countCostProbed(model, { inputShape: shapes })).totalMacs;
      const frozen = frozenBreakdown(analysis, total);
      assert.equal(frozen.share, 0);
      assert.ok(frozen.byFilters < 0.01, `${frozen.byFilters}`);
    });
  }
});

describe('transformers: another exporter layout (HuggingFace-style separate q, k, v and view(B, T, H, D))', () => {
  it('hf_attention.onnx: a float [B, T, C] input has its channels last, the head dim prunes in q·k and in v, and the result equals the masked original', async () => {
    const shapes = { x: [1, 10, 16] };
    const analysis = await analyzeModel(loadClean('hf_attention.onnx'), shapes);
    assert.equal(analysis.spaceOf.get(analysis.model.graph.inputs[0]!)!.axis, 2);
    const open = analysis.groups.filter((g) => g.frozen.length === 0);
    // The stream (32), q and k's head dim (8), v's head dim (8), the MLP (64): only the input and logits stay.
    assert.deepEqual(
      open.map((g) => g.size).sort((a, b) => a - b),
      [8, 8, 32, 64],
    );
    const keep = analysis.groups.map((g) => {
      const m = new Uint8Array(g.size).fill(1);
      if (!g.frozen.length) m[1] = m[g.size - 1] = 0;
      return m;
    });
    const { model: pruned } = new PassManager().run(applyPlanPass, analysis.model, { analysis, keep });
    const masked = loadClean('hf_attention.onnx');
    const fresh = await analyzeModel(masked, shapes);
    maskRemovedChannels(fresh, keep);
    maskRemovedInputs(fresh, keep);
    const at = { x: [1, 7, 16] };
    const diff = maxAbsDiff(await runShapes(masked, at, 3), await runShapes(pruned, at, 3));
    assert.ok(diff <= 1e-4, `pruned differs from the masked original by ${diff}`);
  });
});
