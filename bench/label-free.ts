/**
 * Issue 29's trained-fixture figures (`npm run bench -- label-free`, or `npx tsx bench/label-free.ts [--dir DIR]
 * [--seeds 7,9,11] [--models det,seg,seg-wide] [--model-dir DIR]`): each trained SynthDet model pruned to 50%
 * MACs with unlabelled images, then scored on labelled ones it never saw.
 * - Data: `fixtures/synthdet.py DIR/sS --train 300 --val 200 --seed S` per seed (Debian's /usr/bin/python3 with
 *   numpy and the Fashion-MNIST files), made once and kept when --dir is given.
 * - Runs: `prune MODEL --flops 0.5 --data DIR/sS/images/train --finetune-epochs E` for E = 0 (compensated and
 *   recalibrated, no training) and E = 1 (one epoch of label-free distillation, what issue 29's targets name),
 *   and without --finetune-epochs (the default: as many epochs as the MACs allow, up to 20), each written model
 *   and the original scored by `eval --task T` on the 200 val images; the figure is the pruned model's share of
 *   the original's mAP50-95 (detect) or mIoU (segment).
 * - Models: fixtures/trained/NAME.onnx, or NAME.onnx in --model-dir first (`det-n`, yolov8n's widths, is not
 *   committed: `fixtures/make_trained.py --only det --variant wide --out DIR` makes it in about 8 CPU minutes).
 * Skips with the reason when Python cannot make the data.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli } from './adapruner-cli.js';

const HERE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(HERE), '..');
/**
 * Issue 29's targets, as shares of the original's figure: the detector's after compensation and after one epoch,
 * the segmenter's after label-free recovery (the default's epochs).
 */
const TARGETS: Record<string, { compensated?: number; oneEpoch?: number; recovered?: number }> = {
  detect: { compensated: 0.7, oneEpoch: 0.95 },
  segment: { recovered: 0.95 },
};
/** The 8-32 channel UNet cannot reach half its MACs at multiples of 8. */
const EXTRA_ARGS: Record<string, string[]> = { seg: ['--round-to', '2'] };

function flag(name: string, fallback: string): string;
function flag(name: string): string | undefined;
function flag(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

/** DIR/sS with 300 train and 200 val SynthDet images of seed S, made when absent. */
function dataFor(dir: string, seed: number): string | { skipped: string } {
  const out = path.join(dir, `s${seed}`);
  if (fs.existsSync(path.join(out, 'synthdet.json'))) return out;
  const generator = path.join(REPO, 'fixtures', 'synthdet.py');
  const args = [generator, out, '--train', '300', '--val', '200', '--seed', `${seed}`];
  const r = spawnSync('/usr/bin/python3', args, { encoding: 'utf8' });
  if (r.status !== 0) return { skipped: `fixtures/synthdet.py failed: ${r.stderr.trim().split('\n').pop()}` };
  return out;
}

function modelFile(name: string): string {
  const given = flag('model-dir');
  const candidates = [
    ...(given ? [path.join(given, `${name}.onnx`)] : []),
    `${REPO}/fixtures/trained/${name}.onnx`,
  ];
  const found = candidates.find((f) => fs.existsSync(f));
  if (!found) throw new Error(`no ${name}.onnx in ${candidates.join(' or ')}`);
  return found;
}

/** The labelled task figure (mAP50-95 or mIoU) of `model` on the val split of `data`. */
function score(model: string, data: string, task: string): number {
  const { stdout } = cli(['eval', model, '--data', data, '--task', task, '--json']);
  return (JSON.parse(stdout) as { labelled: { value: number } }).labelled.value;
}

function oneModel(name: string, data: string, seed: number, dir: string): object {
  const model = modelFile(name);
  const task = (
    JSON.parse(fs.readFileSync(model.replace(/\.onnx$/, '.layout.json'), 'utf8')) as { task: string }
  ).task;
  const original = score(model, data, task);
  const stage = (epochs?: number): { value: number; share: number; seconds: number } => {
    const out = path.join(dir, `${name}-s${seed}-e${epochs ?? 'default'}.onnx`);
    const pruneArgs = ['prune', model, '--flops', '0.5', '--data', path.join(data, 'images', 'train')];
    const { seconds } = cli([
      ...pruneArgs,
      ...(epochs === undefined ? [] : ['--finetune-epochs', `${epochs}`]),
      ...(EXTRA_ARGS[name] ?? []),
      '-o',
      out,
    ]);
    const value = score(out, data, task);
    return { value, share: value / original, seconds };
  };
  const compensated = stage(0);
  const oneEpoch = stage(1);
  const defaultEpochs = stage();
  const target = TARGETS[task]!;
  return {
    model: path.relative(REPO, model),
    seed,
    metric: task === 'detect' ? 'mAP50-95' : 'mIoU',
    original,
    compensated,
    oneEpoch,
    defaultEpochs,
    met: {
      ...(target.compensated !== undefined ? { compensated: compensated.share >= target.compensated } : {}),
      ...(target.oneEpoch !== undefined ? { oneEpoch: oneEpoch.share >= target.oneEpoch } : {}),
      ...(target.recovered !== undefined ? { recovered: defaultEpochs.share >= target.recovered } : {}),
    },
  };
}

export async function run(): Promise<object> {
  const dir = flag('dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-label-free-'));
  fs.mkdirSync(dir, { recursive: true });
  try {
    const seeds = flag('seeds', '7').split(',').map(Number);
    const models = flag('models', 'det,seg,seg-wide').split(',');
    const rows: object[] = [];
    for (const seed of seeds) {
      const data = dataFor(dir, seed);
      if (typeof data !== 'string') return data;
      for (const name of models) rows.push(oneModel(name, data, seed, dir));
    }
    return { budget: '50% MACs', targets: TARGETS, rows };
  } finally {
    if (!flag('dir')) fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === HERE) console.log(JSON.stringify(await run(), null, 2));
