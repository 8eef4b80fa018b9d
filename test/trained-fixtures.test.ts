/**
 * The trained SynthDet fixtures (fixtures/make_trained.py) record their figures on the committed 24-image copy
 * (`smallCopy` in MODEL.metrics.json), measured by the script's own Python metric on torch outputs. `eval` on
 * the same images (onnxruntime, adapruner's metric, the layout and preprocessing beside the model) must give the
 * same figures: a fixture whose recorded accuracy cannot be reproduced would make every share measured against
 * it meaningless, and two independent metric implementations agreeing checks both.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { fixture, runCli } from './helpers.js';

/** metrics.json's key for each of eval's figures. */
const RECORDED_AS: Record<string, string> = { mAP50: 'mAP50', 'mAP50-95': 'mAP50_95', mIoU: 'mIoU' };

describe('trained SynthDet fixtures', () => {
  for (const name of ['det', 'seg', 'seg-wide']) {
    it(`${name}.onnx: eval on fixtures/synthdet reproduces the recorded small-copy figures`, async () => {
      const metrics = JSON.parse(fs.readFileSync(fixture(`trained/${name}.metrics.json`), 'utf8')) as {
        smallCopy: Record<string, number>;
      };
      const r = await runCli([
        'eval',
        fixture(`trained/${name}.onnx`),
        '--data',
        fixture('synthdet'),
        '--json',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const values = (JSON.parse(r.stdout) as { labelled: { values: Record<string, number> } }).labelled
        .values;
      const compared = Object.keys(values).filter((k) => k in RECORDED_AS);
      assert.ok(compared.length > 0, `no recorded figure among ${Object.keys(values).join(', ')}`);
      for (const k of compared) {
        const recorded = metrics.smallCopy[RECORDED_AS[k]!];
        assert.equal(typeof recorded, 'number', `${name}.metrics.json records no ${RECORDED_AS[k]}`);
        // recorded to 4 decimals from torch's float32 outputs
        assert.ok(
          Math.abs(values[k]! - recorded!) <= 6e-5,
          `${k}: eval ${values[k]} against recorded ${recorded}`,
        );
      }
    });
  }
});
