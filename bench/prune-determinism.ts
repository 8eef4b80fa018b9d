/**
 * Issue 32: the time of a data-free `prune --flops 0.5` against a load+save round trip, by default (nothing
 * measured) and with `--measure-latency` (what the default did before), and whether the default writes the same
 * bytes on an idle machine and with three busy loops beside it. Models: ResNet-50 and MobileNetV2 (torchvision
 * structure, seeded random weights, bench/prune.ts) and the shared ResNet-56 when present. Each run is its own
 * process, timed around the command alone (imports excluded); the fastest of a few runs is kept.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { materialise } from './prune.js';

const HERE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(HERE), '..');
const SHARED_R56 = path.resolve(REPO, '..', 'shared', 'models', 'resnet56-cifar10.onnx');

/** Child: `roundtrip FILE OUT` (load + save) or `prune FILE OUT [options]`; prints its milliseconds. */
async function child(args: string[]): Promise<void> {
  const [mode, file, out, ...rest] = args as [string, string, string, ...string[]];
  const { loadModel, saveModel } = await import('../src/ir/index.js');
  const { main } = await import('../src/cli/main.js');
  const start = performance.now();
  if (mode === 'roundtrip') saveModel(loadModel(file), out);
  else {
    const log = process.stderr.write.bind(process.stderr);
    process.stderr.write = (() => true) as typeof process.stderr.write;
    const code = await main(['prune', file, '--flops', '0.5', '-o', out, '--no-report', ...rest]);
    process.stderr.write = log;
    if (code !== 0) throw new Error(`prune exited ${code}`);
  }
  console.log(JSON.stringify({ ms: performance.now() - start }));
}

function timed(args: string[]): number {
  const out = execFileSync(process.execPath, ['--import', 'tsx', HERE, 'child', ...args], {
    cwd: REPO,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return (JSON.parse(out.trim().split('\n').at(-1)!) as { ms: number }).ms;
}

const sha = (file: string): string =>
  createHash('sha256').update(fs.readFileSync(file)).digest('hex').slice(0, 16);

function fastest(runs: number, args: string[]): number {
  return Math.min(...Array.from({ length: runs }, () => timed(args)));
}

/** Three CPU-bound loops, as other work on the machine. */
function busyLoops(): ChildProcess[] {
  return [0, 1, 2].map(() =>
    spawn(process.execPath, ['-e', 'for (;;) Math.sqrt(Math.random());'], { stdio: 'ignore' }),
  );
}

export async function run(): Promise<object> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-determinism-'));
  try {
    const models: [string, string][] = [
      ['resnet50', materialise('resnet50', dir)],
      ['mobilenet_v2', materialise('mobilenet_v2', dir)],
      ...(fs.existsSync(SHARED_R56) ? [['resnet56', SHARED_R56] as [string, string]] : []),
    ];
    const figures: Record<string, unknown> = { loadAverage: os.loadavg()[0]!.toFixed(2) };
    for (const [name, file] of models) {
      const out = (tag: string) => path.join(dir, `${name}-${tag}.onnx`);
      const roundtrip = fastest(3, ['roundtrip', file, out('rt')]);
      const byDefault = fastest(3, ['prune', file, out('idle')]);
      const measured = fastest(2, ['prune', file, out('measured'), '--measure-latency']);
      const loops = busyLoops();
      let busy: number;
      try {
        busy = timed(['prune', file, out('busy')]);
      } finally {
        for (const l of loops) l.kill();
      }
      figures[name] = {
        'load+save ms': Math.round(roundtrip),
        'prune ms (default)': Math.round(byDefault),
        'prune ms (--measure-latency)': Math.round(measured),
        'ratio default': (byDefault / roundtrip).toFixed(2),
        'ratio --measure-latency': (measured / roundtrip).toFixed(2),
        'prune ms with 3 busy loops': Math.round(busy),
        'sha256 idle': sha(out('idle')),
        'sha256 with 3 busy loops': sha(out('busy')),
        'same bytes': sha(out('idle')) === sha(out('busy')),
      };
    }
    return figures;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'child') await child(process.argv.slice(3));
