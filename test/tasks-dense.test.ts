import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { tmpDir } from './helpers.js';
import { denseTask, type DenseMaps } from '../src/tasks/dense.js';
import { layoutPathFor, resolveLayout, taskFromShape } from '../src/tasks/layout.js';

const maps = (values: number[], channels = 1): DenseMaps => ({
  data: Float32Array.from(values),
  channels,
  height: 1,
  width: values.length / channels,
});

describe('dense maps: IoU of the thresholded maps and mean absolute difference', () => {
  it('by hand, summed over images, then averaged over channels', () => {
    const metric = denseTask.metric({ task: 'dense' }, false);
    metric.add(maps([0.9, 0.6, 0.1, 0.2]), maps([1, 0, 0, 0.7])); // fg p: {0,1}, t: {0,3} -> I 1, U 3
    metric.add(maps([0.2, 0.8]), maps([0, 1])); // I 1, U 1
    const s = metric.summary();
    assert.equal(s.value, 2 / 4);
    const abs = [0.1, 0.6, 0.1, 0.5, 0.2, 0.2];
    assert.ok(Math.abs(s.values.meanAbsDiff! - abs.reduce((a, b) => a + b) / 6) < 1e-7);
  });

  it('two channels each get their IoU; a channel with no foreground is left out; NaN targets are not scored', () => {
    const metric = denseTask.metric({ task: 'dense', threshold: 0.5 }, false);
    metric.add(maps([0.9, 0.9, 0, 0], 2), maps([0.9, 0, 0, NaN], 2));
    assert.equal(metric.summary().value, 0.5);
    assert.ok(Math.abs(metric.summary().values.meanAbsDiff! - 0.9 / 3) < 1e-7);
    const empty = denseTask.metric({ task: 'dense' }, true);
    empty.add(maps([0.1]), maps([0.2]));
    assert.equal(empty.summary().value, null);
    assert.match(empty.summary().notes[0]!, /no map has a value above the threshold/);
  });

  it('sigmoid activation when the layout asks; a model against itself scores IoU 1, difference 0', () => {
    const out = { data: Float32Array.from([0, 10, -10, 2]), dims: [1, 1, 2, 2] };
    const [p] = denseTask.decode(out, { task: 'dense', activation: 'sigmoid' });
    assert.deepEqual(
      Array.from(p!.data).map((v) => Math.round(v * 1000) / 1000),
      [0.5, 1, 0, 0.881],
    );
    const metric = denseTask.metric({ task: 'dense' }, true);
    metric.add(p!, denseTask.asTarget(p!, { task: 'dense' }));
    assert.deepEqual(metric.summary().values, { IoU: 1, meanAbsDiff: 0 });
  });
});

describe('the output layout', () => {
  it('defaults from the declared shape: [N,K] classify, [1,4+nc,N] detect, [N,K,H,W] segment, [N,1,H,W] dense', () => {
    const of = (shape: (number | string)[]) => taskFromShape({ name: 'out', shape });
    assert.equal(of(['N', 10]), 'classify');
    assert.equal(of([1, 7, 84]), 'detect');
    assert.equal(of(['N', 4, 64, 64]), 'segment');
    assert.equal(of(['N', 'K', 'H', 'W']), 'segment');
    assert.equal(of(['N', 1, 64, 64]), 'dense');
    assert.equal(of(['N', 1000, 1, 1]), 'classify');
    assert.throws(() => of([1, 2, 3, 4, 5]), /give --task or a layout file/);
  });

  it('--task overrides; an output the model lacks is one line', () => {
    const outputs = [
      { name: 'out', shape: ['N', 3, 8, 8] },
      { name: 'aux', shape: ['N', 3, 8, 8] },
    ];
    assert.equal(resolveLayout({ outputs, task: 'dense' }).layout.task, 'dense');
    assert.equal(resolveLayout({ outputs }).layout.output, 'out');
    assert.throws(() => resolveLayout({ outputs, task: 'pose' }), /--task must be one of/);
  });

  it('MODEL.layout.json beside the model, or --layout FILE; unknown keys and bad values are one line', () => {
    const dir = tmpDir('adapruner-layout-');
    const model = path.join(dir, 'det.onnx');
    const outputs = [{ name: 'output0', shape: [1, 84, 8400] }];
    fs.writeFileSync(layoutPathFor(model), JSON.stringify({ classes: ['a', 'b'], referenceConf: 0.5 }));
    const beside = resolveLayout({ outputs, modelPath: model });
    assert.deepEqual(beside.layout, {
      task: 'detect',
      output: 'output0',
      classes: ['a', 'b'],
      referenceConf: 0.5,
    });
    assert.match(beside.source, /det\.layout\.json/);
    const file = path.join(dir, 'x.json');
    const bad = (json: object) => {
      fs.writeFileSync(file, JSON.stringify(json));
      return () => resolveLayout({ outputs, layoutFile: file });
    };
    assert.throws(
      bad({ task: 'detect', anchors: 3 }),
      /x\.json: unknown key\(s\) anchors in the output layout/,
    );
    assert.throws(bad({ iou: 1.5 }), /'iou' in the output layout must be a number in \[0, 1\]/);
    assert.throws(bad({ boxes: '[N,4+nc]' }), /'boxes' in the output layout must be one of/);
    assert.throws(bad({ output: 'nope' }), /names output 'nope', but the model's outputs are output0/);
    fs.writeFileSync(file, '{"task": ');
    assert.throws(
      () => resolveLayout({ outputs, layoutFile: file }),
      /cannot read the output layout \(not valid JSON/,
    );
  });
});
