/**
 * Issue 32: prune's default path measures nothing, so the same input and options write the same bytes on any
 * machine and at any load; a measurement (asked for with --measure-latency) is reported and decides nothing,
 * and the rounding is judged by the static table of onnxruntime's channel multiples.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadModel, serializeModel } from '../src/ir/index.js';
import { adaPrune } from '../src/pipeline/adaprune.js';
import { ORT_CHANNEL_COST, staticLatencyCost } from '../src/pipeline/latency.js';
import { fixture, runCli, tmpDir } from './helpers.js';

const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

test('the data-free default measures no latency, and two runs write identical bytes', async () => {
  const dir = tmpDir();
  const outs = [path.join(dir, 'a.onnx'), path.join(dir, 'b.onnx')];
  for (const out of outs) {
    const r = await runCli(['prune', fixture('vgg.onnx'), '--flops', '0.5', '-o', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as {
      pipeline: { before: object; after: object; stages: { name: string }[]; notes: string[] };
      skipped: string[];
    };
    assert.ok(!('latencyMs' in s.pipeline.before) && !('latencyMs' in s.pipeline.after));
    assert.deepEqual(
      s.pipeline.stages.filter((st) => /latency|re-prune/.test(st.name)),
      [],
      'no stage measures latency',
    );
    assert.ok(s.skipped.some((k) => /latency measurement/.test(k)));
  }
  assert.equal(sha(fs.readFileSync(outs[0]!)), sha(fs.readFileSync(outs[1]!)));
  assert.equal(
    fs.readFileSync(`${outs[0]}.report.json`, 'utf8').includes('latencyMs'),
    false,
    'the report holds no measured latency',
  );
});

test('a measurement says the result is slower: reported and warned, the model is the same bytes', async () => {
  const never = async (): Promise<number[]> => {
    throw new Error('the default path must not time anything');
  };
  const plain = await adaPrune(loadModel(fixture('vgg.onnx')), { flops: 0.5, timeModels: never });
  const warnings: string[] = [];
  // A loaded machine: the pruned model times twice as slow as the original.
  const measured = await adaPrune(loadModel(fixture('vgg.onnx')), {
    flops: 0.5,
    measureLatency: true,
    timeModels: async (models) => models.map((_, i) => (i === 0 ? 1 : 2)),
    warn: (w) => warnings.push(w),
  });
  assert.equal(sha(serializeModel(measured.model)), sha(serializeModel(plain.model)));
  assert.equal(measured.report.after.latencyMs, 2);
  assert.ok(warnings.some((w) => /measured slower/.test(w)));
  assert.equal(plain.report.after.latencyMs, undefined);
});

test('the static table charges channel counts off multiples of 8 more per MAC', async () => {
  assert.deepEqual(
    ORT_CHANNEL_COST.map((r) => r.multiple),
    [8, 4, 1],
  );
  const original = loadModel(fixture('vgg.onnx'));
  const cost = (roundTo: number) =>
    adaPrune(loadModel(fixture('vgg.onnx')), { flops: 0.5, roundTo, validate: false }).then(
      (r) => staticLatencyCost(r.model) / staticLatencyCost(original),
    );
  const [eight, one] = [await cost(8), await cost(1)];
  assert.ok(eight < 0.55, `${eight}`);
  assert.ok(one > eight, `round 1: ${one}, round 8: ${eight}`);
});
