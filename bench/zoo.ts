/**
 * The full-size torchvision zoo (`npm run bench -- zoo`): each model exported by Debian's torch with random
 * weights (BN kept, opset 13) into a cache folder under the system temp dir (never the repo), then, per model:
 * channel groups and the share of MACs in frozen groups (as `inspect --groups` reports them), the MAC ratio
 * achieved at `--flops 0.5` (inspect's count of the written file), the prune time (load, cleanup, prune,
 * validate, save) against load+save alone, and the measured latency ratio at batch 1 (both models alternated
 * in one run). Each model runs in its own child process. Skips (with the reason) when torch is absent.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { countCost } from '../src/analysis/cost.js';
import { frozenMacShare } from '../src/analysis/frozen-share.js';
import { loadModel, saveModel } from '../src/ir/index.js';
import { cleanupPipeline } from '../src/passes/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import { analyzeModel, pruneModel } from '../src/prune/index.js';
import { benchmark } from '../src/runtime/benchmark.js';
import { createSession } from '../src/runtime/session.js';

const HERE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(HERE), '..');
const PYTHON = '/usr/bin/python3';
const CACHE = path.join(os.tmpdir(), 'adapruner-zoo-cache');

export const ZOO = [
  'resnet18',
  'resnet50',
  'mobilenet_v2',
  'mobilenet_v3_small',
  'efficientnet_b0',
  'vgg11_bn',
  'densenet121',
  'googlenet',
  'squeezenet1_1',
  'resnext50_32x4d',
  'regnet_x_400mf',
  'shufflenet_v2_x1_0',
  'convnext_tiny',
  'mnasnet1_0',
  'wide_resnet50_2',
];

const EXPORT = `
import sys, torch, torchvision
torch.set_num_threads(1)
name, path = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
kw = {'aux_logits': False, 'init_weights': True} if name == 'googlenet' else {}
model = getattr(torchvision.models, name)(weights=None, **kw).eval()
torch.onnx.export(model, torch.zeros(1, 3, 224, 224), path, opset_version=13, input_names=['input'],
                  output_names=['logits'], dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}},
                  training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
`;

function torchMissing(): string | undefined {
  try {
    execFileSync(PYTHON, ['-c', 'import torch, torchvision'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return `${PYTHON} with torch and torchvision is absent`;
  }
}

function exported(name: string): string {
  const file = path.join(CACHE, `${name}.onnx`);
  if (!fs.existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    execFileSync(PYTHON, ['-c', EXPORT, name, tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
    fs.renameSync(tmp, file);
  }
  return file;
}

/** One measurement in this process: `io` (load + save) or `prune` (load, cleanup, prune to 0.5 with validation, save). */
async function child(mode: string, file: string, out: string): Promise<void> {
  const start = performance.now();
  const model = loadModel(file);
  const figures: Record<string, unknown> = {};
  if (mode === 'prune') {
    cleanupPipeline(new PassManager(), model);
    // The figures below are not part of a prune: their time is left out.
    const untimedFrom = performance.now();
    const analysis = await analyzeModel(model);
    const macs = countCost(model).totalMacs;
    figures.groups = analysis.groups.length;
    figures.frozenGroups = analysis.groups.filter((g) => g.frozen.length).length;
    figures.frozenMacShare = frozenMacShare(analysis, macs);
    const untimed = performance.now() - untimedFrom;
    const { model: pruned, report } = await pruneModel(model, { flops: 0.5, warn: () => undefined });
    saveModel(pruned, out);
    figures.ms = performance.now() - start - untimed;
    figures.note = report.search?.note;
    figures.achieved = countCost(pruned).totalMacs / macs;
  } else {
    saveModel(model, out);
    figures.ms = performance.now() - start;
  }
  console.log(JSON.stringify(figures));
}

function inChild(mode: string, file: string, out: string): Record<string, unknown> {
  const stdout = execFileSync(process.execPath, ['--import', 'tsx', HERE, '--child', mode, file, out], {
    cwd: REPO,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 1 << 24,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

async function latencyRatio(original: string, pruned: string): Promise<number> {
  const sessions = [await createSession(original), await createSession(pruned)];
  try {
    const [a, b] = await benchmark(sessions, { batch: 1, seconds: 6 });
    return b!.medianMs / a!.medianMs;
  } finally {
    for (const s of sessions) await s.release();
  }
}

export async function run(): Promise<object> {
  const missing = torchMissing();
  if (missing) return { skipped: missing };
  fs.mkdirSync(CACHE, { recursive: true });
  const only = process.env.ZOO_MODELS?.split(',');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-bench-zoo-'));
  const rows: Record<string, unknown> = {};
  try {
    for (const name of ZOO.filter((n) => !only || only.includes(n))) {
      process.stderr.write(`zoo: ${name}...\n`);
      try {
        const file = exported(name);
        const io = inChild('io', file, path.join(dir, `${name}-io.onnx`));
        const out = path.join(dir, `${name}-pruned.onnx`);
        const p = inChild('prune', file, out);
        rows[name] = {
          groups: p.groups,
          frozenGroups: p.frozenGroups,
          frozenMacShare: +(p.frozenMacShare as number).toFixed(3),
          achievedAt05: +(p.achieved as number).toFixed(4),
          ...(p.note ? { note: p.note } : {}),
          pruneMs: Math.round(p.ms as number),
          loadSaveMs: Math.round(io.ms as number),
          pruneOverLoadSave: +((p.ms as number) / (io.ms as number)).toFixed(2),
          latencyRatioBatch1: +(await latencyRatio(file, out)).toFixed(3),
        };
      } catch (e) {
        const err = e as { stderr?: string | Buffer; message: string };
        const text = String(err.stderr ?? '') || err.message;
        rows[name] = { error: text.trim().split('\n').filter(Boolean).pop()?.slice(0, 300) };
      }
      process.stderr.write(`zoo: ${name}: ${JSON.stringify(rows[name])}\n`);
      for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { force: true });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

if (process.argv[2] === '--child') await child(process.argv[3]!, process.argv[4]!, process.argv[5]!);
