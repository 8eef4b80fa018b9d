/**
 * prune --task (issue 29): every stage's model is measured by the task's metric beside the R² fidelity, against
 * the labels of the evaluation images when they have them, and against the original's outputs; the labelled
 * figure where there is one, else the one against the original, ranks the stages written and the candidates. The trained SynthDet detector and segmenter on the small SynthDet copy.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { resolveSpec, specForInput } from '../src/data/preprocess.js';
import { randomSplit } from '../src/pipeline/label-free.js';
import type { AccuracyStage, PruneReport } from '../src/report/types.js';
import { evaluateTask } from '../src/tasks/evaluate.js';
import { TaskImageFolder } from '../src/tasks/folder.js';
import { readLayoutFile } from '../src/tasks/layout.js';
import { folderLabels } from '../src/tasks/task-labels.js';
import { fixture, runCli, tmpDir } from './helpers.js';

const inUnit = (v: unknown): boolean => typeof v === 'number' && v >= 0 && v <= 1;

/** The stage `keep` writes: the highest value, a tie going to the later stage. */
function best(stages: AccuracyStage[], value: (a: AccuracyStage) => number): string {
  return stages.filter((a) => a.stage !== 'original').reduce((a, b) => (value(b) >= value(a) ? b : a)).stage;
}

describe('prune --task', () => {
  const dir = tmpDir();
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const det = fixture('trained/det.onnx');
  const quick = ['--criterion', 'l1', '--widths', 'structural', '--calibration-images', '8'];

  it('detect with labels: mAP on labels and against the original at every stage; the labelled mAP ranks', async () => {
    const out = path.join(dir, 'det.onnx');
    const r = await runCli([
      'prune',
      det,
      '--flops',
      '0.5',
      '--task',
      'detect',
      '--data',
      fixture('synthdet'),
      ...quick.slice(2), // every criterion: the candidates are ranked by the labelled mAP too
      '--finetune-epochs',
      '1',
      '--json',
      '-o',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const report = (JSON.parse(r.stdout) as { pipeline: PruneReport }).pipeline;
    assert.equal(report.task?.name, 'detect');
    assert.equal(report.task?.ranksStages, 'labels');
    assert.equal(report.task?.ranksCandidates, 'labels');
    // The candidates: each with its labelled mAP50-95 on the held-out images; the best one chosen.
    assert.ok(report.criteria.length > 1);
    for (const c of report.criteria) assert.ok(inUnit(c.task), JSON.stringify(c));
    const top = Math.max(...report.criteria.map((c) => c.task!));
    assert.equal(report.criteria.find((c) => c.chosen)!.task, top, JSON.stringify(report.criteria));
    assert.match(report.task?.labels ?? '', /labels/);
    const stages = report.accuracy.map((a) => a.stage);
    assert.deepEqual([stages[0], stages[1], stages.at(-1)], ['original', 'pruned', 'finetuned']);
    for (const a of report.accuracy) {
      const t = a.task!;
      assert.equal(t.task, 'detect');
      assert.equal(t.images, 8);
      assert.deepEqual(Object.keys(t.labelled!.values).sort(), ['mAP50', 'mAP50-95']);
      for (const v of [...Object.values(t.labelled!.values), t.fidelity!.value])
        assert.ok(inUnit(v), JSON.stringify(a));
      assert.equal(t.labelled!.primary, 'mAP50-95');
    }
    const original = report.accuracy[0]!.task!;
    assert.equal(original.fidelity!.value, 1); // the original against itself
    // The written stage is the best labelled mAP50-95, not the best R².
    assert.equal(
      report.kept?.stage,
      best(report.accuracy, (a) => a.task!.labelled!.value ?? -Infinity),
    );
    assert.match(report.kept?.reason ?? '', /mAP50-95 on labels/);

    // The original's figure is eval's on the same held-out images (the seeded split prune scores on).
    const folder = await TaskImageFolder.open(fixture('synthdet'), 'detect', 'train').catch(() =>
      TaskImageFolder.open(fixture('synthdet'), 'detect', 'test'),
    );
    const { holdout } = randomSplit(folder.length, 8, 0);
    const resolved = resolveSpec({ modelPath: det });
    const layout = { ...readLayoutFile(fixture('trained/det.layout.json')), task: 'detect' as const };
    const e = await evaluateTask(det, folder, {
      spec: specForInput(resolved.spec, [1, 3, 96, 96], det),
      layout,
      indices: holdout,
      labels: folderLabels(folder, 'detect')!,
    });
    assert.deepEqual(original.labelled!.values, e.labelled!.values);

    const md = fs.readFileSync(`${out}.report.md`, 'utf8');
    assert.match(md, /\| mAP50 \| mAP50-95 \| mAP50-95 vs original \|/);
  });

  it('detect on plain images: mAP against the original only, which ranks the candidates and the stages', async () => {
    const out = path.join(dir, 'det-plain.onnx');
    const r = await runCli([
      'prune',
      det,
      '--flops',
      '0.5',
      '--task',
      'detect',
      '--data',
      fixture('synthdet/images/val'),
      ...quick.slice(2), // every criterion: each candidate gets its mAP against the original
      '--finetune-epochs',
      '0',
      '-o',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /fidelity R²\s+error\s+mAP50-95 vs original\s+written/);
    assert.match(r.stdout, /task: +detect: no labels/);
    const report = JSON.parse(fs.readFileSync(`${out}.report.json`, 'utf8')) as PruneReport;
    assert.equal(report.task?.ranksStages, 'original');
    assert.equal(report.task?.ranksCandidates, 'original');
    assert.ok(report.criteria.length > 1);
    for (const c of report.criteria) assert.ok(inUnit(c.task), JSON.stringify(c));
    const top = Math.max(...report.criteria.map((c) => c.task!));
    assert.equal(report.criteria.find((c) => c.chosen)!.task, top, JSON.stringify(report.criteria));
    for (const a of report.accuracy) {
      assert.equal(a.task!.labelled, undefined);
      assert.ok(inUnit(a.task!.fidelity!.value), JSON.stringify(a));
    }
    assert.equal(
      report.kept?.stage,
      best(report.accuracy, (a) => a.task!.fidelity!.value ?? -Infinity),
    );
    assert.match(report.kept?.reason ?? '', /mAP50-95 against the original's outputs/);
    const md = fs.readFileSync(`${out}.report.md`, 'utf8');
    assert.match(md, /proxy mAP50-95 vs original/);
  });

  it('a layout file beside the model takes the task path without --task', async () => {
    const model = path.join(dir, 'beside.onnx');
    fs.copyFileSync(det, model);
    fs.copyFileSync(fixture('trained/det.layout.json'), path.join(dir, 'beside.layout.json'));
    fs.copyFileSync(fixture('trained/det.preprocess.json'), path.join(dir, 'beside.preprocess.json'));
    const args = ['prune', model, '--flops', '0.5', '--data', fixture('synthdet/images/val'), ...quick];
    const r = await runCli([...args, '--finetune-epochs', '0', '--json', '-o', path.join(dir, 'b.onnx')]);
    assert.equal(r.code, 0, r.stderr);
    const report = (JSON.parse(r.stdout) as { pipeline: PruneReport }).pipeline;
    assert.equal(report.task?.name, 'detect');
    assert.match(report.task?.layout ?? '', /beside\.layout\.json/);
    assert.equal(report.task?.ranksStages, 'original');
    // Data-free, the layout file is not read: no images to measure on.
    const free = await runCli(['prune', model, '--flops', '0.5', '--json', '-o', path.join(dir, 'f.onnx')]);
    assert.equal(free.code, 0, free.stderr);
    assert.equal((JSON.parse(free.stdout) as { pipeline: PruneReport }).pipeline.task, undefined);
  });

  it('labels on --val only: they measure and rank the stages, the candidates are ranked against the original', async () => {
    const out = path.join(dir, 'det-val.onnx');
    const r = await runCli([
      'prune',
      det,
      '--flops',
      '0.5',
      '--task',
      'detect',
      '--data',
      fixture('synthdet/images/val'),
      '--val',
      fixture('synthdet'),
      ...quick,
      '--finetune-epochs',
      '0',
      '--json',
      '-o',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const report = (JSON.parse(r.stdout) as { pipeline: PruneReport }).pipeline;
    assert.equal(report.task?.ranksStages, 'labels');
    assert.equal(report.task?.ranksCandidates, 'original');
    for (const a of report.accuracy) {
      assert.equal(a.task!.images, 24); // every --val image
      assert.ok(inUnit(a.task!.labelled!.value), JSON.stringify(a));
    }
    assert.equal(
      report.kept?.stage,
      best(report.accuracy, (a) => a.task!.labelled!.value ?? -Infinity),
    );
  });

  it('segment with masks: mIoU and pixel accuracy at every stage', async () => {
    const out = path.join(dir, 'seg.onnx');
    const r = await runCli([
      'prune',
      fixture('trained/seg.onnx'),
      '--flops',
      '0.6',
      '--task',
      'segment',
      '--data',
      fixture('synthdet'),
      ...quick,
      '--finetune-epochs',
      '0',
      '--json',
      '-o',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const report = (JSON.parse(r.stdout) as { pipeline: PruneReport }).pipeline;
    assert.equal(report.task?.name, 'segment');
    for (const a of report.accuracy) {
      assert.deepEqual(Object.keys(a.task!.labelled!.values).sort(), ['mIoU', 'pixelAccuracy']);
      assert.ok(inUnit(a.task!.labelled!.value) && inUnit(a.task!.fidelity!.value), JSON.stringify(a));
    }
    assert.equal(report.accuracy[0]!.task!.fidelity!.value, 1);
    // A trained segmenter: its mIoU on its own validation images is far from chance.
    assert.ok(report.accuracy[0]!.task!.labelled!.value! > 0.5, JSON.stringify(report.accuracy[0]));
  });

  it('refuses --task without --data in one line', async () => {
    const r = await runCli([
      'prune',
      det,
      '--flops',
      '0.5',
      '--task',
      'detect',
      '-o',
      path.join(dir, 'x.onnx'),
    ]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /--task .*--data/);
    assert.ok(!fs.existsSync(path.join(dir, 'x.onnx')));
  });
});
