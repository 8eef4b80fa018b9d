/**
 * Issue 28's figures on full-size detectors and segmenters (`npm run bench -- dense [flags]`, or
 * `npx tsx bench/dense.ts [--only NAME[,NAME]] [--dir DIR] [--json-out FILE] [--threads N] [--seconds S]
 * [--repeats K]`).
 * The models are the random-init exports of bench/dense-models.py (Debian's /usr/bin/python3 with torch):
 * into a temporary folder removed afterwards, or into --dir (kept, and reused when already there). Per model,
 * one at a time, each step in its own process:
 * 1. frozen MAC share by groups and by filters (frozenBreakdown, after the cleanup prune runs first, as
 *    `inspect --groups` does), the groups and the largest frozen reasons;
 * 2. `adapruner prune M --flops R -o OUT --json` for R = 0.5, 0.3, 0.7 (the CLI's defaults: data-free,
 *    round-to 8), and the achieved ratio counted independently: MACs from the dims onnxruntime gives for
 *    every MAC op's inputs and outputs (probeModel), for the original and the written file;
 * 3. `adapruner bench PRUNED --vs ORIGINAL --threads T --json` at batch 1 for the 50% model (runs alternate,
 *    medians, speedup = original's median / pruned's), K times (default 3): the median speedup and the range;
 * 4. the prune process's peak RSS (`/usr/bin/time -v`, else process.resourceUsage() in the CLI's process)
 *    against the file size.
 * Skips with the reason when /usr/bin/python3 with torch and torchvision is absent.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { countCostProbed, MAC_OPS, measureCost, resolveInputShapes } from '../src/analysis/cost.js';
import { frozenBreakdown } from '../src/analysis/frozen-share.js';
import { loadModel, type Value } from '../src/ir/index.js';
import { cleanupPipeline } from '../src/passes/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import { analyzeModel } from '../src/prune/index.js';
import { median } from '../src/runtime/benchmark.js';
import { probeModel } from '../src/shapes/probe.js';

const HERE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(HERE), '..');
const BIN = path.join(REPO, 'bin', 'adapruner.mjs');
const PYTHON = '/usr/bin/python3';
const TIME = '/usr/bin/time';
const RATIOS = [0.5, 0.3, 0.7];
const TARGET = { frozen: 0.03, achieved: [0.4975, 0.5], speedup: 1.5 };
/** Model file (without .onnx) -> the dense-models.py job that writes it; `speed` marks the ≥ 1.5x targets. */
export const MODELS: { name: string; job: string; speed?: boolean }[] = [
  { name: 'yolov8n-opset12', job: 'yolov8n', speed: true },
  { name: 'yolov8n-opset17', job: 'yolov8n', speed: true },
  { name: 'deeplabv3_mobilenet_v3_large', job: 'deeplabv3_mobilenet_v3_large', speed: true },
  { name: 'lraspp_mobilenet_v3_large', job: 'lraspp_mobilenet_v3_large' },
  { name: 'fcn_resnet50', job: 'fcn_resnet50' },
  { name: 'unet_convt', job: 'unet_convt' },
  { name: 'unet_up', job: 'unet_up' },
];
/** Longest any one step may take (the FCN-ResNet50 steps take minutes on two busy cores). */
const STEP_TIMEOUT_MS = 40 * 60_000;

export interface DenseOptions {
  /** Model names (or dense-models.py job names, e.g. yolov8n for both opsets). */
  only?: string[];
  /** Where the exports live (kept); default a temporary folder removed afterwards. */
  dir?: string;
  jsonOut?: string;
  /** Intra-op threads of both sessions in the latency comparison. */
  threads: number;
  /** Time budget of one latency comparison (bench --seconds). */
  seconds: number;
  /** Latency comparisons per model (the median speedup is reported). */
  repeats: number;
}

const USAGE =
  'usage: npx tsx bench/dense.ts [--only NAME[,NAME]] [--dir DIR] [--json-out FILE] [--threads N] ' +
  `[--seconds S] [--repeats K]; NAME: ${MODELS.map((m) => m.name).join(', ')} or yolov8n`;

function parseArgs(argv: string[]): DenseOptions {
  const options: DenseOptions = { threads: 1, seconds: 15, repeats: 3 };
  const args = argv[0] === 'dense' ? argv.slice(1) : argv;
  for (let i = 0; i < args.length; i++) {
    const [flag, value] = [args[i]!, args[i + 1]];
    if (flag === '--help' || flag === '-h') throw new Error(USAGE);
    if (value === undefined) throw new Error(`${flag}: a value is missing (${USAGE})`);
    i++;
    if (flag === '--only') options.only = value.split(',').filter(Boolean);
    else if (flag === '--dir') options.dir = path.resolve(value);
    else if (flag === '--json-out') options.jsonOut = path.resolve(value);
    else if (flag === '--threads') options.threads = Number(value);
    else if (flag === '--seconds') options.seconds = Number(value);
    else if (flag === '--repeats') options.repeats = Number(value);
    else throw new Error(`unknown flag ${flag} (${USAGE})`);
  }
  if (!(Number.isInteger(options.threads) && options.threads > 0))
    throw new Error('--threads: a positive integer');
  if (!(options.seconds > 0)) throw new Error('--seconds: a positive number');
  if (!(Number.isInteger(options.repeats) && options.repeats > 0))
    throw new Error('--repeats: a positive integer');
  return options;
}

export function torchMissing(): string | undefined {
  try {
    execFileSync(PYTHON, ['-c', 'import torch, torchvision'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return `${PYTHON} with torch and torchvision is absent: no dense-model figures`;
  }
}

/** Exports the models not yet in `dir`, one dense-models.py run for all of them. */
export function exportModels(dir: string, models: typeof MODELS): void {
  const jobs = [...new Set(models.filter((m) => !fs.existsSync(modelFile(dir, m.name))).map((m) => m.job))];
  if (!jobs.length) return;
  process.stderr.write(`dense: exporting ${jobs.join(', ')} with ${PYTHON}...\n`);
  execFileSync(PYTHON, [path.join(REPO, 'bench', 'dense-models.py'), dir, '--only', jobs.join(',')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    maxBuffer: 1 << 24,
  });
}

export function modelFile(dir: string, name: string): string {
  return path.join(dir, `${name}.onnx`);
}

/** Child `analyze`: inspect's MAC count, then the cleanup prune runs first and the frozen breakdown. */
async function analyzeChild(file: string): Promise<object> {
  const model = loadModel(file);
  const macs = (await countCostProbed(model)).totalMacs;
  cleanupPipeline(new PassManager(), model);
  const analysis = await analyzeModel(model);
  const frozen = frozenBreakdown(analysis, macs);
  return {
    macs,
    groups: analysis.groups.length,
    frozenGroups: analysis.groups.filter((g) => g.frozen.length).length,
    frozenByGroups: frozen.share,
    frozenByFilters: frozen.byFilters,
    reasons: frozen.reasons.slice(0, 4).map((r) => ({ ...r, share: r.amount / macs })),
  };
}

/**
 * Child `macs`: MACs counted from onnxruntime's dims alone (every MAC op's non-constant inputs and outputs
 * fetched from one unoptimised session; weights from the initializers), not from the compiler's shape
 * analysis.
 */
async function macsChild(file: string): Promise<object> {
  const model = loadModel(file);
  const inputShapes = resolveInputShapes(model);
  const macNodes = model.graph.nodes.filter((n) => MAC_OPS.includes(n.opType));
  const wanted = new Set<Value>();
  for (const n of macNodes)
    for (const v of [...n.inputs, ...n.outputs]) if (v && !v.isInitializer) wanted.add(v);
  const probe = await probeModel(model, new Map(Object.entries(inputShapes)), [...wanted]);
  const cost = measureCost(model, inputShapes, (v) => probe.dims.get(v));
  return { macs: cost.totalMacs, params: cost.totalParams, macNodes: macNodes.length };
}

function inChild(mode: 'analyze' | 'macs', file: string): Record<string, unknown> {
  const stdout = execFileSync(process.execPath, ['--import', 'tsx', HERE, '--child', mode, file], {
    cwd: REPO,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 1 << 24,
    timeout: STEP_TIMEOUT_MS,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

/** Runs the CLI; under /usr/bin/time -v when it is there, else with a hook printing the process's maxRSS. */
function cli(args: string[]): { status: number | null; stdout: string; stderr: string; maxRssKb?: number } {
  const viaTime = fs.existsSync(TIME);
  const hook = `data:text/javascript,${encodeURIComponent(
    "process.on('exit', () => process.stderr.write(`\\nmaxRSS kB: ${process.resourceUsage().maxRSS}\\n`));",
  )}`;
  const [cmd, argv] = viaTime
    ? [TIME, ['-v', process.execPath, BIN, ...args]]
    : [process.execPath, ['--import', hook, BIN, ...args]];
  const r = spawnSync(cmd, argv, {
    cwd: REPO,
    encoding: 'utf8',
    maxBuffer: 1 << 26,
    timeout: STEP_TIMEOUT_MS,
  });
  const rss = /(?:Maximum resident set size \(kbytes\)|maxRSS kB): (\d+)/.exec(r.stderr ?? '');
  return {
    status: r.status,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    ...(rss ? { maxRssKb: Number(rss[1]) } : {}),
  };
}

/** The CLI's own error line (the last stderr line before /usr/bin/time's report). */
function errorLine(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.trim() && !/^\s|^Command (being timed|exited)/.test(l));
  return (lines.pop() ?? 'no message').slice(0, 400);
}

interface PruneFigures {
  ratio: number;
  ok: boolean;
  error?: string;
  achievedCli?: number;
  achievedIndependent?: number;
  wallSeconds: number;
  maxRssMB?: number;
  fileMB?: number;
  notes?: string[];
}

/** One `adapruner prune --flops R`, then the independent count of the written file. */
function pruneAt(file: string, ratio: number, out: string, originalMacs: number): PruneFigures {
  const start = performance.now();
  const r = cli(['prune', file, '--flops', String(ratio), '-o', out, '--json', '--no-report']);
  const wallSeconds = +((performance.now() - start) / 1000).toFixed(1);
  const rss = r.maxRssKb !== undefined ? { maxRssMB: +(r.maxRssKb / 1024).toFixed(0) } : {};
  if (r.status !== 0) return { ratio, ok: false, error: errorLine(r.stderr), wallSeconds, ...rss };
  const report = JSON.parse(r.stdout) as {
    original: { macs: number };
    pruned: { macs: number };
    pipeline?: { notes?: string[] };
  };
  const independent = inChild('macs', out).macs as number;
  const notes = (report.pipeline?.notes ?? []).filter((n) => !n.startsWith('skipped:'));
  return {
    ratio,
    ok: true,
    achievedCli: report.pruned.macs / report.original.macs,
    achievedIndependent: independent / originalMacs,
    wallSeconds,
    ...rss,
    fileMB: +(fs.statSync(out).size / 2 ** 20).toFixed(2),
    ...(notes.length ? { notes } : {}),
  };
}

/**
 * `adapruner bench PRUNED --vs ORIGINAL`, `repeats` times: both alternated at batch 1, the ratio of the
 * medians; the median ratio of the repeats and their range (the spread a shared machine gives).
 */
function speed(pruned: string, original: string, options: DenseOptions): Record<string, unknown> {
  const args = ['bench', pruned, '--vs', original, '--threads', String(options.threads)];
  const reports: { models: { medianMs: number; runs: number }[]; speedup: number }[] = [];
  for (let i = 0; i < options.repeats; i++) {
    const r = cli([...args, '--seconds', String(options.seconds), '--json']);
    if (r.status !== 0) return { error: errorLine(r.stderr) };
    reports.push(JSON.parse(r.stdout) as (typeof reports)[number]);
  }
  const speedups = reports.map((r) => r.speedup);
  return {
    speedup: median(speedups),
    range: [Math.min(...speedups), Math.max(...speedups)],
    originalMs: median(reports.map((r) => r.models[1]!.medianMs)),
    prunedMs: median(reports.map((r) => r.models[0]!.medianMs)),
    runs: reports.reduce((n, r) => n + r.models[0]!.runs, 0),
  };
}

/** Every figure of one model; the outputs are removed as soon as they are measured. */
function measureModel(
  model: (typeof MODELS)[number],
  dir: string,
  work: string,
  options: DenseOptions,
): Record<string, unknown> {
  const file = modelFile(dir, model.name);
  process.stderr.write(`dense: ${model.name}: frozen share...\n`);
  const analysis = inChild('analyze', file);
  const original = inChild('macs', file);
  const originalMacs = original.macs as number;
  const row: Record<string, unknown> = {
    fileMB: +(fs.statSync(file).size / 2 ** 20).toFixed(2),
    macs: analysis.macs,
    macsIndependent: originalMacs,
    groups: analysis.groups,
    frozenGroups: analysis.frozenGroups,
    frozenByGroups: analysis.frozenByGroups,
    frozenByFilters: analysis.frozenByFilters,
    frozenReasons: analysis.reasons,
  };
  const prunes: PruneFigures[] = [];
  for (const ratio of RATIOS) {
    process.stderr.write(`dense: ${model.name}: prune --flops ${ratio}...\n`);
    const out = path.join(work, `${model.name}-${ratio}.onnx`);
    prunes.push(pruneAt(file, ratio, out, originalMacs));
    if (ratio === 0.5 && prunes.at(-1)!.ok) {
      process.stderr.write(`dense: ${model.name}: bench --vs (threads ${options.threads})...\n`);
      row.speed = speed(out, file, options);
    }
    fs.rmSync(out, { force: true });
  }
  row.prunes = prunes;
  const at05 = prunes.find((p) => p.ratio === 0.5)!;
  const speedup = (row.speed as { speedup?: number } | undefined)?.speedup;
  row.targets = {
    frozenByFilters: (analysis.frozenByFilters as number) <= TARGET.frozen,
    achievedAt05:
      at05.achievedIndependent !== undefined &&
      at05.achievedIndependent >= TARGET.achieved[0]! &&
      at05.achievedIndependent <= TARGET.achieved[1]!,
    ...(model.speed ? { speedupAt05: speedup !== undefined && speedup >= TARGET.speedup } : {}),
  };
  return row;
}

const gib = (bytes: number): number => Math.round(bytes / 2 ** 30);
const pct = (x: unknown): string => (typeof x === 'number' ? `${(100 * x).toFixed(1)}%` : '-');
const fix = (x: unknown, d: number): string => (typeof x === 'number' ? x.toFixed(d) : '-');

/** A compact table of every model's figures. */
export function renderTable(rows: Record<string, Record<string, unknown>>): string {
  const head = [
    'model',
    'groups (frozen)',
    'frozen by groups',
    'by filters',
    'ach@0.3',
    'ach@0.5 (cli)',
    'ach@0.7',
    'speedup@0.5',
    'peak RSS MB / file MB',
    'prune s',
  ];
  const lines = [head, head.map(() => '---')];
  for (const [name, r] of Object.entries(rows)) {
    if (r.error) {
      lines.push([name, `error: ${String(r.error)}`, ...head.slice(2).map(() => '')]);
      continue;
    }
    const p = (ratio: number) => (r.prunes as PruneFigures[]).find((x) => x.ratio === ratio)!;
    const ach = (ratio: number) => (p(ratio).ok ? fix(p(ratio).achievedIndependent, 4) : 'refused');
    const s = r.speed as { speedup?: number; range?: number[] } | undefined;
    const rssOverFile = (p(0.5).maxRssMB ?? NaN) / (r.fileMB as number);
    lines.push([
      name,
      `${String(r.groups)} (${String(r.frozenGroups)})`,
      pct(r.frozenByGroups),
      pct(r.frozenByFilters),
      ach(0.3),
      `${ach(0.5)} (${fix(p(0.5).achievedCli, 4)})`,
      ach(0.7),
      s?.speedup !== undefined
        ? `${s.speedup.toFixed(2)}x (${s.range!.map((x) => x.toFixed(2)).join('–')})`
        : '-',
      `${p(0.5).maxRssMB ?? '-'} / ${String(r.fileMB)} (${fix(rssOverFile, 1)}x)`,
      String(p(0.5).wallSeconds),
    ]);
  }
  return lines.map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

export async function run(argv: string[] = process.argv.slice(2)): Promise<object> {
  const options = parseArgs(argv);
  const missing = torchMissing();
  if (missing) {
    process.stderr.write(`dense: skipped: ${missing}\n`);
    return { skipped: missing };
  }
  const models = MODELS.filter((m) => !options.only || options.only.some((o) => o === m.name || o === m.job));
  if (!models.length) throw new Error(`--only matches none of ${MODELS.map((m) => m.name).join(', ')}`);
  const dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-dense-models-'));
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-dense-out-'));
  const started = new Date();
  const loadBefore = os.loadavg()[0]!;
  const rows: Record<string, Record<string, unknown>> = {};
  try {
    fs.mkdirSync(dir, { recursive: true });
    exportModels(dir, models);
    for (const model of models) {
      try {
        rows[model.name] = measureModel(model, dir, work, options);
      } catch (e) {
        const err = e as { stderr?: string | Buffer; message: string };
        rows[model.name] = { error: errorLine(String(err.stderr ?? '') || err.message) };
      }
      process.stderr.write(`dense: ${model.name}: ${JSON.stringify(rows[model.name])}\n`);
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
    if (!options.dir) fs.rmSync(dir, { recursive: true, force: true });
  }
  const result = {
    date: started.toISOString().slice(0, 10),
    machine: `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), ${gib(os.totalmem())} GiB`,
    loadAverage: { start: +loadBefore.toFixed(1), end: +os.loadavg()[0]!.toFixed(1) },
    threads: options.threads,
    benchSeconds: options.seconds,
    benchRepeats: options.repeats,
    rssSource: fs.existsSync(TIME) ? '/usr/bin/time -v' : 'process.resourceUsage().maxRSS',
    targets: TARGET,
    minutes: +((Date.now() - started.getTime()) / 60_000).toFixed(1),
    models: rows,
  };
  if (options.jsonOut) fs.writeFileSync(options.jsonOut, `${JSON.stringify(result, null, 2)}\n`);
  process.stderr.write(`\n${renderTable(rows)}\n`);
  return result;
}

if (process.argv[2] === '--child') {
  const [mode, file] = [process.argv[3]!, process.argv[4]!];
  console.log(JSON.stringify(mode === 'analyze' ? await analyzeChild(file) : await macsChild(file)));
} else if (process.argv[1] && path.resolve(process.argv[1]) === HERE) {
  await run();
}
