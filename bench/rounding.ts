/**
 * How channel rounding moves the speed of one pruned network (`npm run bench -- rounding [flags]`, or
 * `npx tsx bench/rounding.ts [--model NAME] [--dir DIR] [--flops R] [--seconds S] [--json-out FILE]`): the
 * yolov8n-scale export of bench/dense-models.py (default; any dense.ts model name) pruned data-free to `--flops`
 * (default 0.5) under each option set of VARIANTS, every file's MACs counted by the CLI, then all of them and the
 * original timed in one process, runs alternating between the models (src/runtime/benchmark.ts: batch 1, seeded
 * noise in [-1, 1), 1 intra-op thread), medians; speed-up = the original's median over the variant's. The table
 * of docs/results.md, "Detectors and segmenters (issue 28)" (its history: docs/history.md, issue 28, second
 * pass). Skips with the reason when /usr/bin/python3 with torch is absent.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../src/ir/index.js';
import { measureLatencies } from '../src/pipeline/latency.js';
import { probeInputDims } from '../src/shapes/probe.js';
import { exportModels, modelFile, MODELS, torchMissing } from './dense.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(REPO, 'bin', 'adapruner.mjs');

/** Option sets compared, after `prune MODEL --flops R`. */
const VARIANTS: { name: string; args: string[] }[] = [
  {
    name: 'default (speed widths; 8; 16 in groups of 128+; at least 16 under the block floor; whole branch units)',
    args: [],
  },
  { name: '--widths structural (the default before the speed source)', args: ['--widths', 'structural'] },
  { name: '--min-channels 1 (no block floor)', args: ['--min-channels', '1'] },
  { name: '--round-to 8', args: ['--round-to', '8'] },
  { name: '--round-to 16', args: ['--round-to', '16'] },
  { name: '--widths uniform', args: ['--widths', 'uniform'] },
  { name: '--round-to 16 --widths uniform', args: ['--round-to', '16', '--widths', 'uniform'] },
];

interface RoundingOptions {
  model: string;
  dir?: string;
  flops: number;
  seconds: number;
  jsonOut?: string;
}

const USAGE =
  'usage: npx tsx bench/rounding.ts [--model NAME] [--dir DIR] [--flops R] [--seconds S] [--json-out FILE]';

function parseArgs(argv: string[]): RoundingOptions {
  const options: RoundingOptions = { model: 'yolov8n-opset17', flops: 0.5, seconds: 60 };
  const args = argv[0] === 'rounding' ? argv.slice(1) : argv;
  for (let i = 0; i < args.length; i += 2) {
    const [flag, value] = [args[i]!, args[i + 1]];
    if (flag === '--help' || flag === '-h') throw new Error(USAGE);
    if (value === undefined) throw new Error(`${flag}: a value is missing (${USAGE})`);
    if (flag === '--model') options.model = value;
    else if (flag === '--dir') options.dir = path.resolve(value);
    else if (flag === '--flops') options.flops = Number(value);
    else if (flag === '--seconds') options.seconds = Number(value);
    else if (flag === '--json-out') options.jsonOut = path.resolve(value);
    else throw new Error(`unknown flag ${flag} (${USAGE})`);
  }
  if (!MODELS.some((m) => m.name === options.model))
    throw new Error(`--model: one of ${MODELS.map((m) => m.name).join(', ')}`);
  if (!(options.flops > 0 && options.flops <= 1)) throw new Error('--flops: a ratio in (0, 1]');
  if (!(options.seconds > 0)) throw new Error('--seconds: a positive number');
  return options;
}

/** `prune` under one variant; the MAC ratio the CLI reports. */
function prune(model: string, out: string, flops: number, args: string[]): number {
  const r = spawnSync(
    process.execPath,
    [BIN, 'prune', model, '--flops', String(flops), ...args, '-o', out, '--report', 'false', '--json'],
    { cwd: REPO, encoding: 'utf8', maxBuffer: 1 << 26 },
  );
  if (r.status !== 0) throw new Error(`prune ${args.join(' ')}: ${r.stderr.trim().split('\n').pop()}`);
  const summary = JSON.parse(r.stdout) as { original: { macs: number }; pruned: { macs: number } };
  return summary.pruned.macs / summary.original.macs;
}

export async function run(argv: string[] = process.argv.slice(2)): Promise<object> {
  const options = parseArgs(argv);
  const missing = torchMissing();
  if (missing) {
    process.stderr.write(`rounding: skipped: ${missing}\n`);
    return { skipped: missing };
  }
  const dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-rounding-models-'));
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-rounding-out-'));
  try {
    fs.mkdirSync(dir, { recursive: true });
    exportModels(
      dir,
      MODELS.filter((m) => m.name === options.model),
    );
    const original = modelFile(dir, options.model);
    const files = [original];
    const achieved: number[] = [];
    for (const [i, v] of VARIANTS.entries()) {
      process.stderr.write(`rounding: prune ${v.name}...\n`);
      const out = path.join(work, `variant${i}.onnx`);
      achieved.push(prune(original, out, options.flops, v.args));
      files.push(out);
    }
    const shape = [...probeInputDims(loadModel(original)).values()][0]!;
    process.stderr.write(`rounding: timing ${files.length} models alternately for ${options.seconds} s...\n`);
    const ms = await measureLatencies(
      files.map((f) => fs.readFileSync(f)),
      { shape, seconds: options.seconds, runtime: { threads: 1 } },
    );
    const rows = VARIANTS.map((v, i) => ({
      variant: v.name,
      achieved: achieved[i],
      medianMs: ms[i + 1],
      speedup: ms[0]! / ms[i + 1]!,
    }));
    const result = {
      date: new Date().toISOString().slice(0, 10),
      machine: `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'})`,
      loadAverage: os.loadavg()[0],
      model: options.model,
      flops: options.flops,
      originalMs: ms[0],
      rows,
    };
    for (const r of rows)
      process.stderr.write(
        `rounding: ${r.variant.padEnd(58)} ${r.achieved!.toFixed(4)} of the MACs  ${r.medianMs!.toFixed(1)} ms  ${r.speedup.toFixed(2)}x\n`,
      );
    if (options.jsonOut) fs.writeFileSync(options.jsonOut, `${JSON.stringify(result, null, 1)}\n`);
    return result;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
    if (!options.dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await run();
