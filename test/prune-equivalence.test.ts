import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { analyzeModel, pruneModel } from '../src/prune/index.js';
import { FIXTURE_MODELS, fixture, needsShared, sharedModel } from './helpers.js';
import { load, maskRemovedChannels, maxAbsDiff, runModel } from './prune-helpers.js';

const FILES = FIXTURE_MODELS.flatMap((m) => [fixture(`${m}.onnx`), fixture(`${m}-bnfolded.onnx`)]);

/** Prunes a fresh copy with `options`, then checks it against the original with the removed channels zeroed. */
async function checkMaskEquivalence(
  file: string,
  options: Parameters<typeof pruneModel>[1],
): Promise<number> {
  const { model: pruned, plan, report } = await pruneModel(load(file), options);
  assert.ok(
    report.groups.some((g) => g.after < g.before),
    'the plan removes something',
  );
  const masked = load(file);
  const analysis = await analyzeModel(masked);
  const keep = plan.groups.map((g) => {
    const m = new Uint8Array(g.channels);
    for (const c of g.keep) m[c] = 1;
    return m;
  });
  maskRemovedChannels(analysis, keep);
  const diff = maxAbsDiff(await runModel(masked), await runModel(pruned));
  assert.ok(diff <= 1e-5, `${file}: pruned differs from the masked original by ${diff}`);
  return diff;
}

describe('prune: keep-all plan', () => {
  for (const file of FILES) {
    it(`leaves ${file.split('/').pop()} bit-identical`, async () => {
      const before = await runModel(load(file));
      const { model, report } = await pruneModel(load(file), { flops: 1 });
      assert.ok(report.groups.every((g) => g.after === g.before));
      const after = await runModel(model);
      assert.equal(maxAbsDiff(before, after), 0);
    });
  }
});

describe('prune: mask equivalence (removed channels zeroed in the original)', () => {
  for (const file of FILES) {
    it(`${file.split('/').pop()} at --flops 0.5, l1 and random`, async () => {
      await checkMaskEquivalence(file, { flops: 0.5, criterion: 'l1' });
      await checkMaskEquivalence(file, { flops: 0.4, criterion: 'random', seed: 3 });
    });
  }
  for (const name of ['resnet56-cifar10.onnx', 'resnet56-cifar10-bnfolded.onnx']) {
    it(`shared ${name} at --flops 0.5`, needsShared(`models/${name}`), async () => {
      await checkMaskEquivalence(sharedModel(name), { flops: 0.5, criterion: 'random', seed: 1 });
    });
  }
});
