/**
 * Without labels, prune reads each stage's R² and its task figure off one run of the stage's model
 * (src/pipeline/scoring.ts, evaluateStage). The figures must be the ones `eval --against` measures on the
 * written model, on the same images; and the written model's sidecars let eval read it without flags.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { PruneReport } from '../src/report/types.js';
import { fixture, runCli, tmpDir } from './helpers.js';

describe('stage figures from the R² run', () => {
  it('the kept stage of the trained detector reports what eval --against measures', async () => {
    const dir = tmpDir();
    const images = path.join(dir, 'images');
    fs.mkdirSync(images);
    const source = fixture('synthdet/images/val');
    for (const f of fs.readdirSync(source)) fs.copyFileSync(path.join(source, f), path.join(images, f));
    const original = fixture('trained/det.onnx');
    const out = path.join(dir, 'slim.onnx');
    const pruned = await runCli([
      ...['prune', original, '--flops', '0.5', '--data', images, '--val', images],
      ...['--criterion', 'l1', '--widths', 'bn', '--finetune-epochs', '0', '-o', out],
    ]);
    assert.equal(pruned.code, 0, pruned.stderr);
    const report = JSON.parse(fs.readFileSync(`${out}.report.json`, 'utf8')) as PruneReport;
    const kept = report.accuracy.find((a) => a.stage === report.kept?.stage)!;
    const reported = kept.task!.fidelity!.values;
    // The preprocessing and layout files beside the original are written beside the output: eval needs no flags.
    for (const kind of ['preprocess', 'layout'])
      assert.deepEqual(
        fs.readFileSync(path.join(dir, `slim.${kind}.json`)),
        fs.readFileSync(fixture(`trained/det.${kind}.json`)),
      );
    const evaluated = await runCli(['eval', out, '--data', images, '--against', original, '--json']);
    assert.equal(evaluated.code, 0, evaluated.stderr);
    const measured = (JSON.parse(evaluated.stdout) as { fidelity: { values: Record<string, number> } })
      .fidelity.values;
    assert.ok(measured['mAP50-95']! > 0.05, JSON.stringify(measured));
    for (const key of ['mAP50', 'mAP50-95'])
      assert.ok(
        Math.abs(measured[key]! - reported[key]!) < 1e-9,
        `${key}: ${measured[key]} vs ${reported[key]}`,
      );
  });
});
