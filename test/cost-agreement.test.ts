import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { countCostProbed } from '../src/analysis/cost.js';
import { loadModel } from '../src/ir/index.js';
import { cleanupPipeline, PassManager } from '../src/passes/index.js';
import { analyzeForPruning, applyPlan, planPrune } from '../src/prune/index.js';
import { FIXTURES } from './helpers.js';

const files = [
  ...fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.onnx')),
  ...fs.readdirSync(path.join(FIXTURES, 'families')).map((f) => path.join('families', f)),
  ...fs.readdirSync(path.join(FIXTURES, 'dense')).map((f) => path.join('dense', f)),
].filter((f) => f.endsWith('.onnx'));

/** Dynamic-H/W exports are counted at the shape they were exported for. */
const shapeFor = (file: string): number[] | undefined =>
  file.includes('-dynamic') ? [1, 3, 64, 64] : undefined;

describe('one cost model: prune counts what inspect counts (the same shape path, every MAC)', () => {
  for (const file of files) {
    test(`${file}: MACs and params before and after a 0.5 prune equal inspect's`, async () => {
      const model = loadModel(path.join(FIXTURES, file));
      cleanupPipeline(new PassManager(), model);
      const inputShape = shapeFor(file);
      const inputShapes = inputShape && { [model.graph.inputs[0]!.name]: inputShape };
      const before = await countCostProbed(model, { inputShape });
      const analysis = await analyzeForPruning(model, { inputShapes });
      const planned = planPrune(analysis, { flops: 0.5, roundTo: 1 });
      assert.equal(planned.report.original.macs, before.totalMacs, 'MACs before');
      assert.equal(planned.report.original.params, before.totalParams, 'params before');
      const after = await countCostProbed(applyPlan(analysis, planned), { inputShape });
      assert.equal(planned.report.pruned.macs, after.totalMacs, 'MACs after');
      assert.equal(planned.report.pruned.params, after.totalParams, 'params after');
    });
  }
});
