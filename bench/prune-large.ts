import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `npm run bench -- prune-large`: what a data-free prune (`--flops 0.5`, validated in onnxruntime, saved) costs
 * against `inspect` of the same file, both as whole processes (issue 32): peak RSS over the file's size (target
 * at most 2.5x) and prune wall time over inspect wall time (target at most 3x), fastest of PRUNE_LARGE_RUNS runs
 * (default 3; peak RSS is the highest of them).
 *
 * Models: torchvision's, random init with BatchNorm kept, exported by Debian's /usr/bin/python3 with torch
 * (PRUNE_LARGE_MODELS, default `vgg16_bn`: the full 553 MB VGG-16-BN, which a CI runner with 2 GB holds; also
 * `wide_resnet50_2`, `resnet50` or any torchvision classifier). Without torch that part is skipped and says so.
 * LARGE_MODEL_MB > 0 adds the synthetic Conv-BN-ReLU chain of that many megabytes (bench/prune-large-child.ts).
 * Everything lives in a temporary folder, removed afterwards.
 */
export async function run(): Promise<object> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-large-'));
  const runs = Math.max(1, Number(process.env.PRUNE_LARGE_RUNS ?? 3));
  const results: Record<string, object> = {};
  try {
    const models = (process.env.PRUNE_LARGE_MODELS ?? 'vgg16_bn').split(',').filter(Boolean);
    const python = torchPython();
    if (!python) results.torchvision = { skipped: '/usr/bin/python3 with torch and torchvision not found' };
    else
      for (const name of models) {
        const file = path.join(dir, `${name}.onnx`);
        const t = performance.now();
        exportTorchvision(python, name, file);
        results[name] = {
          exportSeconds: +((performance.now() - t) / 1000).toFixed(1),
          ...measure(file, runs),
        };
        fs.rmSync(file, { force: true });
      }
    const megabytes = Number(process.env.LARGE_MODEL_MB ?? 0);
    if (megabytes > 0) {
      const file = path.join(dir, 'chain.onnx');
      child('build', file, String(megabytes));
      results[`chain-${megabytes}MB`] = measure(file, runs);
    }
    return results;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'prune-large-child.ts');

function child(...args: string[]): { code: number; maxRssBytes: number; seconds: number } {
  const t = performance.now();
  const out = execFileSync(process.execPath, ['--import', 'tsx', CHILD, ...args], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const seconds = (performance.now() - t) / 1000;
  return { ...JSON.parse(out.trim().split('\n').at(-1) || '{}'), seconds };
}

function measure(file: string, runs: number): object {
  const fileBytes = fs.statSync(file).size;
  const best = { prune: Infinity, inspect: Infinity, pruneRss: 0, inspectRss: 0, code: 0 };
  for (let i = 0; i < runs; i++) {
    const inspect = child('inspect', file);
    const prune = child('prune', file, `${file}.pruned.onnx`);
    best.inspect = Math.min(best.inspect, inspect.seconds);
    best.prune = Math.min(best.prune, prune.seconds);
    best.inspectRss = Math.max(best.inspectRss, inspect.maxRssBytes);
    best.pruneRss = Math.max(best.pruneRss, prune.maxRssBytes);
    best.code ||= prune.code || inspect.code;
  }
  const pruned = fs.statSync(`${file}.pruned.onnx`).size;
  fs.rmSync(`${file}.pruned.onnx`, { force: true });
  const mb = (n: number): number => +(n / 2 ** 20).toFixed(1);
  return {
    fileMB: mb(fileBytes),
    prunedMB: mb(pruned),
    exitCode: best.code,
    prunePeakRssMB: mb(best.pruneRss),
    prunePeakRssOverFile: +(best.pruneRss / fileBytes).toFixed(2),
    inspectPeakRssMB: mb(best.inspectRss),
    rssTarget: 2.5,
    pruneSeconds: +best.prune.toFixed(2),
    inspectSeconds: +best.inspect.toFixed(2),
    pruneOverInspect: +(best.prune / best.inspect).toFixed(2),
    wallTarget: 3,
  };
}

function torchPython(): string | undefined {
  const python = '/usr/bin/python3';
  try {
    execFileSync(python, ['-c', 'import torch, torchvision'], { stdio: 'ignore' });
    return python;
  } catch {
    return undefined;
  }
}

/** Random init (seed 0), BatchNorm kept (training=PRESERVE, no constant folding), input [N,3,224,224]. */
function exportTorchvision(python: string, name: string, file: string): void {
  if (!/^\w+$/.test(name)) throw new Error(`not a torchvision model name: ${name}`);
  const script = [
    'import sys, torch, torchvision',
    'torch.manual_seed(0)',
    `m = getattr(torchvision.models, '${name}')().eval()`,
    'x = torch.randn(1, 3, 224, 224)',
    'torch.onnx.export(m, x, sys.argv[1], training=torch.onnx.TrainingMode.PRESERVE,',
    "  do_constant_folding=False, input_names=['input'], output_names=['output'],",
    "  dynamic_axes={'input': {0: 'N'}, 'output': {0: 'N'}})",
  ].join('\n');
  execFileSync(python, ['-c', script, file], { stdio: ['ignore', 'ignore', 'ignore'] });
}
