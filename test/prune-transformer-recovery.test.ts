/**
 * prune with labels on a trained transformer (fixtures/trained/vit.onnx, torchvision's VisionTransformer on
 * Fashion-MNIST): the candidates include Taylor scores (from the producers' weight gradients where there is no
 * BN; test/taylor-weights.test.ts checks the terms and `--criterion taylor` on this model), and fine-tuning runs
 * at the LayerNorm default rate and says so. A BN-folded CNN (no BN either, no LayerNorm) gets Taylor scores
 * too and keeps the CNN rate.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import type { PruneReport } from '../src/report/types.js';
import { fixture, runCli, tmpDir } from './helpers.js';

describe('prune with labels on a trained ViT', () => {
  const dir = tmpDir();
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const vit = fixture('trained/vit.onnx');
  const data = fixture('example/fashion-mnist');
  const quick = ['--calibration-images', '200', '--finetune-limit', '512', '--widths', 'uniform'];

  it('auto compares the criteria with Taylor, and fine-tunes at the LayerNorm rate', async () => {
    const r = await runCli([
      'prune',
      vit,
      '--flops',
      '0.5',
      '--data',
      data,
      ...quick,
      '--json',
      '-o',
      path.join(dir, 'a.onnx'),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const report = (JSON.parse(r.stdout) as { pipeline: PruneReport; notes?: string[] }).pipeline;
    const criteria = new Set(report.criteria.map((c) => c.criterion));
    assert.ok(criteria.has('l1') && criteria.has('fpgm') && criteria.has('taylor'), [...criteria].join(','));
    assert.match(
      r.stdout + r.stderr,
      /fine-tuning ran at lr 0\.01, the default for a model normalised by LayerNorm/,
    );
    assert.ok(report.accuracy.some((a) => a.stage === 'finetuned'));
  });

  it('a CNN exported with BN folded: Taylor from its convs, and fine-tuning keeps the CNN rate', async () => {
    const args = ['prune', fixture('fmnist_cnn-bnfolded.onnx'), '--flops', '0.5', '--preset', 'fmnist'];
    const r = await runCli([...args, '--data', data, ...quick, '--json', '-o', path.join(dir, 'f.onnx')]);
    assert.equal(r.code, 0, r.stderr);
    const report = (JSON.parse(r.stdout) as { pipeline: PruneReport }).pipeline;
    assert.ok(report.criteria.length > 1 && report.criteria.some((c) => c.criterion === 'taylor'));
    assert.doesNotMatch(r.stdout + r.stderr, /no measured Taylor scores/);
    assert.doesNotMatch(r.stdout + r.stderr, /LayerNorm/);
  });
});
