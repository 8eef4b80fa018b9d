import fs from 'node:fs';
import path from 'node:path';
import { resolveSpec, specForInput, type ResolvedSpec } from '../data/preprocess.js';
import { UserError } from '../errors.js';
import { loadModel } from '../ir/index.js';
import { packageInfo } from '../package-root.js';
import type { PruneReport } from '../report/types.js';
import { renderTable } from '../report/table.js';
import { createProgress, type Progress } from '../runtime/progress.js';
import { runTaskEval } from '../tasks/cli.js';
import { imageInputDims, inputShapesFor } from './input-shape.js';
import { main } from './main.js';

/**
 * `adapruner example --task detect`: the trained SynthDet detector (fixtures/trained/det.onnx, YOLOv8-style,
 * ultralytics export layout) pruned to half its MACs and recovered without labels, as `prune --data IMAGES`
 * does on a plain folder of images (candidates ranked and stages scored by fidelity to the original, least-
 * squares compensation, distillation from the original), with `--task detect` so every stage also reports its
 * mAP against the original's detections. Then mAP@0.5 and mAP@0.5:0.95 of the original and the written model
 * against the YOLO labels of the same images, measured exactly as `eval --task detect` measures them.
 */
export interface DetectExampleArgs {
  output: string;
  json: boolean;
  verbose: boolean;
  timings: boolean;
}

export const DETECT_EXAMPLE_OUTPUT = 'example-output/det-pruned.onnx';

/** Distillation epochs over the unlabelled images (16 after 8 are held out to score the stages). */
const EPOCHS = 4;

/** The two labelled figures, before and after. */
interface MapFigures {
  mAP50: number | null;
  'mAP50-95': number | null;
  images: number;
}

export async function runDetectExample(argv: DetectExampleArgs): Promise<number> {
  const root = packageInfo().root;
  const rel = (...p: string[]): string =>
    path.relative(process.cwd(), path.join(root, 'fixtures', ...p)) || '.';
  const model = rel('trained', 'det.onnx');
  const layout = rel('trained', 'det.layout.json');
  const spec = rel('trained', 'det.preprocess.json');
  const labelled = rel('synthdet');
  const images = rel('synthdet', 'images', 'val');
  for (const needed of [model, layout, spec, images])
    if (!fs.existsSync(needed))
      throw new UserError(
        'the detector example reads fixtures/trained/det.* and fixtures/synthdet/ of the adapruner package, and this one is missing',
        needed,
      );
  const args = [
    'prune',
    model,
    '--flops',
    '0.5',
    '--task',
    'detect',
    '--data',
    images,
    '--calibration-images',
    '8',
    '--finetune-epochs',
    String(EPOCHS),
    // Batches of 8 (the detector's batch axis is free): BN trains on batch statistics; at batch 1 (frozen BN) the
    // detect rule's distillation of this detector diverged.
    '--finetune-batch',
    '8',
    '-o',
    argv.output,
    ...(argv.verbose ? ['--verbose'] : []),
    ...(argv.timings ? ['--timings'] : []),
  ];
  const started = performance.now();
  if (!argv.json) process.stderr.write(`adapruner ${args.join(' ')}\n`);
  // With --json, prune's own JSON is taken in and becomes part of the example's one object.
  const pruned = argv.json ? await captured(() => main([...args, '--json'])) : { code: await main(args) };
  if (pruned.code !== 0) return pruned.code;
  const preprocessing = fitted(resolveSpec({ specFile: spec, modelPath: model }), model);
  const measure = (file: string, what: string): Promise<MapFigures> =>
    labelledMap(file, labelled, layout, preprocessing, what);
  const before = await measure(model, 'mAP of the original');
  const after = await measure(argv.output, 'mAP of the pruned model');
  const seconds = (performance.now() - started) / 1000;
  if (argv.json) {
    const report = (JSON.parse(pruned.stdout!) as { pipeline: PruneReport }).pipeline;
    const summary = {
      task: 'detect',
      model,
      output: argv.output,
      data: { unlabelled: images, labelled, images: before.images },
      macs: { before: report.before.macs, after: report.after.macs },
      params: { before: report.before.params, after: report.after.params },
      budget: report.budget,
      mAP50: { before: before.mAP50, after: after.mAP50 },
      mAP50_95: { before: before['mAP50-95'], after: after['mAP50-95'] },
      kept: report.kept,
      stages: report.accuracy,
      seconds,
      prune: report,
    };
    process.stdout.write(`${JSON.stringify(summary, null, 1)}\n`);
    return 0;
  }
  const fmt = (v: number | null): string => (v === null ? 'undefined' : v.toFixed(4));
  const table = renderTable(
    ['', { header: 'original', align: 'right' }, { header: 'pruned', align: 'right' }],
    [
      ['mAP@0.5', fmt(before.mAP50), fmt(after.mAP50)],
      ['mAP@0.5:0.95', fmt(before['mAP50-95']), fmt(after['mAP50-95'])],
    ],
  );
  process.stdout.write(
    `\nmAP against the YOLO labels of ${labelled} (${before.images} images; prune read them without labels):\n` +
      `${table}\n` +
      `(adapruner eval ${argv.output} --data ${labelled} --task detect --spec ${spec} --layout ${layout} measures the same)\n` +
      `example: ${seconds.toFixed(1)} s\n`,
  );
  return 0;
}

/** mAP of one model against the labels, through eval's own task path (src/tasks/cli.ts). */
async function labelledMap(
  model: string,
  data: string,
  layout: string,
  preprocessing: ResolvedSpec,
  what: string,
): Promise<MapFigures> {
  let bar: Progress | undefined;
  try {
    const text = await runTaskEval({
      model,
      data,
      task: 'detect',
      layout,
      split: 'test',
      seed: 0,
      json: true,
      preprocessing,
      runtime: {},
      openClassData: () => {
        throw new UserError('the detector example reads a task folder');
      },
      onProgress: (done, total) => (bar ??= createProgress(what, total)).update(done),
    });
    bar?.stop();
    bar = undefined;
    const r = JSON.parse(text) as { labelled: { values: Record<string, number | null> }; n: number };
    return { mAP50: r.labelled.values.mAP50!, 'mAP50-95': r.labelled.values['mAP50-95']!, images: r.n };
  } finally {
    bar?.stop();
  }
}

/** As eval fits a letterbox spec to the model's input size. */
function fitted(resolved: ResolvedSpec, modelPath: string): ResolvedSpec {
  if (typeof resolved.spec.resize !== 'string' || resolved.spec.size) return resolved;
  const m = loadModel(modelPath);
  const dims = imageInputDims(m, inputShapesFor(m, undefined, modelPath));
  return { ...resolved, spec: specForInput(resolved.spec, dims, modelPath) };
}

/** Runs a CLI call with its console.log output taken in rather than printed (prune --json's one object). */
async function captured(run: () => Promise<number>): Promise<{ code: number; stdout?: string }> {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...parts: unknown[]) => void lines.push(parts.map(String).join(' '));
  try {
    const code = await run();
    return { code, stdout: lines.join('\n') };
  } finally {
    console.log = log;
  }
}
