/**
 * A candidate's task figure read off the run that scored its R² (src/pipeline/stage-task.ts, measureOutputs)
 * equals the figure of a run of its own (measure), against labels and against the original alike: the pipeline
 * runs each candidate once under --task.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openDataset } from '../src/data/open.js';
import { resolveSpec, specForInput } from '../src/data/preprocess.js';
import { serializeModel } from '../src/ir/index.js';
import { FidelityScorer } from '../src/pipeline/label-free.js';
import { StageTaskScorer } from '../src/pipeline/stage-task.js';
import { pruneModel } from '../src/prune/index.js';
import { TaskImageFolder } from '../src/tasks/folder.js';
import { readLayoutFile } from '../src/tasks/layout.js';
import { folderLabels } from '../src/tasks/task-labels.js';
import { fixture } from './helpers.js';
import { load } from './prune-helpers.js';

describe('task figure from the R² run', () => {
  it('the trained detector at 50% MACs: measureOutputs equals measure, labelled and against the original', async () => {
    const file = fixture('trained/det.onnx');
    const original = serializeModel(load(file));
    const { model } = await pruneModel(load(file), { flops: 0.5, criterion: 'l1', validate: false });
    const candidate = serializeModel(model);
    const spec = specForInput(
      resolveSpec({ specFile: fixture('trained/det.preprocess.json') }).spec,
      ['N', 3, 96, 96],
      file,
    );
    const layout = { ...readLayoutFile(fixture('trained/det.layout.json')), task: 'detect' as const };
    const folder = await TaskImageFolder.open(fixture('synthdet'), 'detect', 'test');
    const images = await openDataset(fixture('synthdet/images/val'), { split: 'train', labels: 'optional' });
    const indices = Int32Array.from({ length: 12 }, (_, i) => 2 * i);
    const labels = folderLabels(folder, 'detect');
    const scorer = new StageTaskScorer(original, images, indices, spec, {}, 5, { layout, labels });
    const alone = await scorer.measure(candidate);
    const run = await new FidelityScorer(original, spec, {}, 7).scoreWithOutputs(candidate, images, indices);
    const shared = await scorer.measureOutputs(run.outputs);
    assert.equal(shared.images, 12);
    assert.deepEqual(shared, alone);
    assert.ok(alone.labelled && alone.fidelity, JSON.stringify(alone));
    assert.ok(alone.fidelity.value! > 0 && alone.fidelity.value! < 1, JSON.stringify(alone.fidelity));
  });
});
