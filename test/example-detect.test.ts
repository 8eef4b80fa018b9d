/**
 * `adapruner example --task detect` (issue 29): the trained SynthDet detector pruned to half its MACs and
 * recovered without labels, with mAP before and after. The fixture and the distillation are still being tuned,
 * so this checks structure and sanity, not recovery levels: the model written runs, the MACs meet the budget,
 * every figure is an mAP in [0, 1], and the original's mAP is what `eval --task detect` computes.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import type { PruneReport } from '../src/report/types.js';
import { fixture, runCli, tmpDir } from './helpers.js';

interface ExampleJson {
  task: string;
  output: string;
  macs: { before: number; after: number };
  budget: PruneReport['budget'];
  mAP50: { before: number; after: number };
  mAP50_95: { before: number; after: number };
  data: { images: number };
  stages: PruneReport['accuracy'];
  kept: PruneReport['kept'];
}

/** One run on a grey image at the detector's input size (96 x 96, batch 1). */
async function run(file: string): Promise<ort.Tensor> {
  const session = await ort.InferenceSession.create(file);
  try {
    const input = new ort.Tensor('float32', new Float32Array(3 * 96 * 96).fill(0.5), [1, 3, 96, 96]);
    return (await session.run({ [session.inputNames[0]!]: input }))[session.outputNames[0]!]!;
  } finally {
    await session.release();
  }
}

const inUnit = (v: unknown): boolean => typeof v === 'number' && v >= 0 && v <= 1;
const sha = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

describe('example --task detect', () => {
  const dir = tmpDir();
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'det-pruned.onnx');

  it('prunes the detector to half its MACs, recovers it without labels, and reports mAP before and after', async () => {
    const r = await runCli(['example', '--task', 'detect', '--json', '-o', out]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as ExampleJson; // one JSON object on stdout, nothing else
    assert.equal(j.task, 'detect');
    assert.equal(j.output, out);
    // The budget: half the MACs, met.
    assert.ok(j.macs.after / j.macs.before <= 0.5, JSON.stringify(j.macs));
    assert.equal(j.budget.kind, 'flops');
    for (const v of [j.mAP50.before, j.mAP50.after, j.mAP50_95.before, j.mAP50_95.after])
      assert.ok(inUnit(v), JSON.stringify([j.mAP50, j.mAP50_95]));
    // The trained detector is a real one: mAP@0.5 is well above chance, and above mAP@0.5:0.95.
    assert.ok(j.mAP50.before > 0.5 && j.mAP50.before >= j.mAP50_95.before, JSON.stringify(j.mAP50));
    assert.equal(j.data.images, 24);
    // Label-free stages, each with its mAP against the original's detections; the original matches itself.
    const stages = j.stages.map((s) => s.stage);
    assert.deepEqual(stages.slice(0, 2), ['original', 'pruned']);
    assert.ok(stages.includes('finetuned'), stages.join());
    for (const s of j.stages) {
      assert.equal(s.task?.labelled, undefined, 'prune read no labels');
      assert.ok(inUnit(s.task?.fidelity?.value), JSON.stringify(s));
    }
    assert.equal(j.stages[0]!.task!.fidelity!.value, 1);
    assert.ok(j.kept && stages.includes(j.kept.stage));

    // The model written loads and runs in onnxruntime, with the original's output shape.
    const [original, pruned] = await Promise.all([run(fixture('trained/det.onnx')), run(out)]);
    assert.deepEqual(pruned.dims, original.dims);
    assert.ok((pruned.data as Float32Array).every(Number.isFinite));
    assert.ok(fs.existsSync(`${out}.report.json`));

    // The original's mAP is eval's, on the same images with the same labels.
    const e = await runCli([
      'eval',
      fixture('trained/det.onnx'),
      '--data',
      fixture('synthdet'),
      '--task',
      'detect',
      '--json',
    ]);
    assert.equal(e.code, 0, e.stderr);
    const ev = JSON.parse(e.stdout) as { labelled: { values: Record<string, number> }; n: number };
    assert.equal(ev.n, j.data.images);
    assert.equal(j.mAP50.before, ev.labelled.values.mAP50);
    assert.equal(j.mAP50_95.before, ev.labelled.values['mAP50-95']);
  });

  it('never writes onto its input', async () => {
    const model = fixture('trained/det.onnx');
    const before = sha(model);
    const r = await runCli(['example', '--task', 'detect', '-o', model]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(sha(model), before);
  });
});
