/**
 * Training throughput: the compiled step graph in onnxruntime against PyTorch on the same machine, same
 * threads, batch, loss and optimizer (bench/train_torch.py rebuilds the network from the ONNX weights).
 * Synthetic batches (seeded randn, fixed labels), so only the training step is timed, not image decoding.
 * Each side runs in its own process so its peak RSS is its own; the two sides alternate for
 * BENCH_TRAIN_ROUNDS rounds (default 2) and each keeps its best round, so load from other processes on a
 * shared machine hits both alike.
 *
 * A fair baseline: torch's CPU convolutions go through oneDNN, but everything its BLAS runs (Linear, some
 * conv backward paths) is at the mercy of the `libblas.so.3` alternative. Debian falls back to the reference
 * BLAS (about 2.6 GFLOP/s here) when no optimised one is installed, which once made this bench report 2.4x
 * where OpenBLAS gives 0.57x. So the PyTorch side reports its BLAS (library, OpenBLAS kernel) and conv
 * backend, and no ratio is reported unless that BLAS is OpenBLAS. OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (set
 * on some machines for old OpenBLAS builds) are removed from that process only, so OpenBLAS picks its own
 * kernel; OPENBLAS_NUM_THREADS and OMP_NUM_THREADS are the bench's thread count.
 *
 * `npm run bench -- train`; env BENCH_TRAIN_STEPS (default 5; the 224x224 ResNet-50 takes 2),
 * BENCH_TRAIN_ROUNDS (2), BENCH_TRAIN_MODELS (comma-separated names to run a subset), BENCH_THREADS (2),
 * BENCH_DEVICE (cpu).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { mulberry32 } from '../src/data/prng.js';
import { loadModel, serializeModel, type Model } from '../src/ir/index.js';
import { parseDevice } from '../src/runtime/device.js';
import { createSession } from '../src/runtime/session.js';
import { carriedTensors, stateFeeds } from '../src/train/loop.js';
import { STEP_SESSION_OPTIONS, buildStepGraph, type StepGraph } from '../src/train/step-graph.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TORCH_PYTHON = '/usr/bin/python3';

interface Side {
  imagesPerSecond: number;
  msPerStep: number;
  peakRssMiB: number;
  [k: string]: unknown;
}

interface BenchModel {
  name: string;
  /** The ONNX file, or how to make it (a torchvision export written to a temporary folder). */
  file: string | (() => string | { skipped: string });
  batch: number;
  steps?: number;
  rounds?: number;
  target: number;
}

const MODELS: BenchModel[] = [
  {
    name: 'resnet56',
    file: path.join(REPO, '..', 'shared', 'models', 'resnet56-cifar10.onnx'),
    batch: 128,
    target: 1.0,
  },
  {
    name: 'mobilenetv2',
    file: path.join(REPO, 'fixtures', 'mobilenetv2.onnx'),
    batch: 128,
    target: 0.9,
  },
  { name: 'resnet50-224', file: exportResnet50, batch: 32, steps: 2, rounds: 1, target: 0.9 },
];

/**
 * The PyTorch side's environment: OpenBLAS picks its own kernel and both thread pools get `threads`. Idle
 * OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) as onnxruntime's do (`intra_op.allow_spinning` 0): on this
 * shared machine torch's default spin-waiting made its ResNet-56 step 5x slower (3.2 vs 15.9 images/s, 8.3
 * vs 1.6 CPU-seconds per step, load average 23), which would flatter onnxruntime. BENCH_TORCH_WAIT_POLICY
 * overrides it (e.g. ACTIVE on a quiet machine).
 */
export function torchEnv(threads: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    OPENBLAS_NUM_THREADS: String(threads),
    OMP_NUM_THREADS: String(threads),
    OMP_WAIT_POLICY: process.env.BENCH_TORCH_WAIT_POLICY ?? 'PASSIVE',
  };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return env;
}

export async function run(): Promise<object> {
  const threads = Number(process.env.BENCH_THREADS ?? 2);
  const defaultSteps = Number(process.env.BENCH_TRAIN_STEPS ?? 5);
  const rounds = Number(process.env.BENCH_TRAIN_ROUNDS ?? 2);
  const only = process.env.BENCH_TRAIN_MODELS?.split(',');
  const device = process.env.BENCH_DEVICE ?? 'cpu';
  const torchMissing = torchUnavailable();
  const results = [];
  for (const m of MODELS.filter((m) => !only || only.includes(m.name))) {
    const file = typeof m.file === 'string' ? m.file : torchMissing ? { skipped: torchMissing } : m.file();
    if (typeof file !== 'string' || !fs.existsSync(file)) {
      results.push({ model: m.name, skipped: typeof file === 'string' ? `${file} is absent` : file.skipped });
      continue;
    }
    const { batch } = m;
    const steps = m.steps ?? defaultSteps;
    const modelRounds = m.rounds ?? rounds;
    const ortRounds: Side[] = [];
    const torchRounds: Side[] = [];
    for (let round = 0; round < modelRounds; round++) {
      const sides = [
        () => ortRounds.push(onnxruntimeSide(file, batch, threads, steps, device)),
        () => {
          if (!torchMissing) torchRounds.push(torchSide(file, batch, threads, steps));
        },
      ];
      for (const side of round % 2 === 0 ? sides : sides.reverse()) side();
    }
    const onnxruntime = best(ortRounds);
    const torch: Side | { skipped: string } = torchMissing ? { skipped: torchMissing } : best(torchRounds);
    const blas = 'blas' in torch ? (torch.blas as { kind: string; library: string }) : undefined;
    const refused =
      blas && blas.kind !== 'openblas'
        ? `no ratio: PyTorch ran on ${blas.kind} BLAS (${blas.library}), not OpenBLAS; install libopenblas0-pthread`
        : undefined;
    const ratio =
      'imagesPerSecond' in torch && !refused
        ? onnxruntime.imagesPerSecond / torch.imagesPerSecond
        : undefined;
    // CPU time per step (all threads) is less sensitive to other load than wall time; both are reported.
    const cpuRatio =
      'cpuMsPerStep' in torch && !refused
        ? (torch.cpuMsPerStep as number) / (onnxruntime.cpuMsPerStep as number)
        : undefined;
    const rss =
      'peakRssMiB' in torch ? Math.max(...ortRounds.map((r) => r.peakRssMiB)) / torch.peakRssMiB : undefined;
    if (typeof m.file !== 'string') fs.rmSync(path.dirname(file), { recursive: true, force: true });
    results.push({
      model: m.name,
      batch,
      threads,
      device,
      rounds: modelRounds,
      loadAverage: os.loadavg()[0],
      torchWaitPolicy: torchEnv(threads).OMP_WAIT_POLICY,
      onnxruntime,
      torch,
      imagesPerSecondByRound: {
        onnxruntime: ortRounds.map((r) => round1(r.imagesPerSecond)),
        torch: torchRounds.map((r) => round1(r.imagesPerSecond)),
      },
      ...(refused && { refused }),
      ratio,
      cpuTimeRatio: cpuRatio,
      target: m.target,
      meetsTarget: ratio === undefined ? undefined : ratio >= m.target,
      peakRssRatio: rss,
      meetsRssTarget: rss === undefined ? undefined : rss <= 1.2,
    });
  }
  return { benchmark: 'train', results };
}

const round1 = (x: number): number => Math.round(x * 10) / 10;

function best(rounds: Side[]): Side {
  return rounds.reduce((a, b) => (b.imagesPerSecond > a.imagesPerSecond ? b : a));
}

function onnxruntimeSide(file: string, batch: number, threads: number, steps: number, device: string): Side {
  const args = [
    fileURLToPath(import.meta.url),
    '--child',
    file,
    String(batch),
    String(threads),
    String(steps),
    device,
  ];
  const child = spawnSync(process.execPath, ['--import', 'tsx', ...args], { encoding: 'utf8', cwd: REPO });
  if (child.status !== 0) throw new Error(`onnxruntime side failed: ${child.stderr}`);
  return JSON.parse(child.stdout.trim().split('\n').at(-1)!) as Side;
}

function torchSide(file: string, batch: number, threads: number, steps: number): Side {
  const script = path.join(REPO, 'bench', 'train_torch.py');
  const args = [script, file, '--batch', String(batch), '--threads', String(threads)];
  args.push('--steps', String(steps), '--warmup', '2');
  const child = spawnSync(TORCH_PYTHON, args, { encoding: 'utf8', env: torchEnv(threads) });
  if (child.status !== 0) throw new Error(`PyTorch side failed: ${child.stderr}`);
  return JSON.parse(child.stdout.trim().split('\n').at(-1)!) as Side;
}

/**
 * One synthetic batch (seeded uniform images, labels cycling over 10 classes, lr 0.01) and the model's own
 * parameters and state as the step's first inputs: what both train benches feed.
 */
export function syntheticFeeds(model: Model, step: StepGraph, batch: number): Record<string, ort.Tensor> {
  const random = mulberry32(0);
  const images = Float32Array.from(
    { length: step.imageShape.reduce((a, b) => a * b, 1) },
    () => random() * 2 - 1,
  );
  const feeds: Record<string, ort.Tensor> = {
    [step.inputs.images]: new ort.Tensor('float32', images, step.imageShape),
    [step.inputs.labels]: new ort.Tensor(
      'int64',
      BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 10)),
      [batch],
    ),
    [step.inputs.lr]: new ort.Tensor('float32', new Float32Array([0.01]), []),
  };
  const init = new Map(model.graph.initializers.map((v) => [v.name, v.initializer!.data as Float32Array]));
  // Copies: onnxruntime may reuse the fed buffers, and the model's own weights must stay as loaded.
  Object.assign(
    feeds,
    stateFeeds(step, (name) => {
      const t = init.get(name);
      return t && Float32Array.from(t);
    }),
  );
  return feeds;
}

/** torchvision's ResNet-50 (random init, BN kept), exported once per run into a temporary folder. */
function exportResnet50(): string | { skipped: string } {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-bench-')), 'resnet50.onnx');
  const r = spawnSync(TORCH_PYTHON, [path.join(REPO, 'bench', 'resnet50_onnx.py'), out], {
    encoding: 'utf8',
  });
  return r.status === 0 ? out : { skipped: `ResNet-50 export failed: ${r.stderr.trim().split('\n').at(-1)}` };
}

function torchUnavailable(): string | undefined {
  const r = spawnSync(TORCH_PYTHON, ['-c', 'import torch, onnx'], { encoding: 'utf8' });
  return r.status === 0
    ? undefined
    : `PyTorch side skipped: ${TORCH_PYTHON} with torch and onnx is not installed`;
}

/** One model's onnxruntime measurement, in a child process so that its peak RSS is its own. */
async function child(
  file: string,
  batch: number,
  threads: number,
  steps: number,
  device: string,
): Promise<void> {
  const model = loadModel(file);
  const buildStart = performance.now();
  const step = await buildStepGraph(model, { batchSize: batch, blockedConvs: device === 'cpu' });
  const buildMs = performance.now() - buildStart;
  const sessionStart = performance.now();
  const session = await createSession(serializeModel(step.model), {
    threads,
    device: parseDevice(device),
    overrides: STEP_SESSION_OPTIONS,
  });
  const sessionMs = performance.now() - sessionStart;
  const feeds = syntheticFeeds(model, step, batch);
  const carried = carriedTensors(step);
  const once = async (): Promise<number> => {
    const t = performance.now();
    const out = await session.session.run(feeds);
    const ms = performance.now() - t;
    for (const [from, to] of carried) feeds[to] = out[from] as ort.Tensor;
    return ms;
  };
  // Two warm-up runs, as on the torch side. With onnxruntime's memory pattern (now off for step graphs) the
  // second run still faulted in tens of thousands of pages; the first run fills the arena either way.
  await once();
  await once();
  let runMs = 0;
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < steps; i++) runMs += await once();
  const totalMs = performance.now() - start;
  const cpu = process.cpuUsage(cpuStart);
  await session.release();
  const paramFloats = step.params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
  console.log(
    JSON.stringify({
      imagesPerSecond: (batch * steps * 1000) / totalMs,
      msPerStep: totalMs / steps,
      cpuMsPerStep: (cpu.user + cpu.system) / 1000 / steps,
      overheadMsPerStep: (totalMs - runMs) / steps,
      buildStepGraphMs: buildMs,
      createSessionMs: sessionMs,
      stepGraphNodes: step.model.graph.nodes.length,
      params: paramFloats,
      peakRssMiB: process.resourceUsage().maxRSS / 1024,
      device: session.device,
    }),
  );
}

if (process.argv[2] === '--child') {
  const [file, batch, threads, steps, device] = process.argv.slice(3);
  await child(file!, Number(batch), Number(threads), Number(steps), device!);
}
