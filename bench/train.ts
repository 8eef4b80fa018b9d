/**
 * Training throughput: the compiled step graph in onnxruntime against PyTorch on the same machine, same
 * threads, batch, loss and optimizer (bench/train_torch.py rebuilds the network from the ONNX weights).
 * Synthetic batches (seeded randn, fixed labels), so only the training step is timed, not image decoding.
 * Each side runs in its own process so its peak RSS is its own.
 *
 * `npm run bench -- train`; env BENCH_TRAIN_STEPS (default 5), BENCH_THREADS (default 2), BENCH_DEVICE (cpu).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { mulberry32 } from '../src/data/prng.js';
import { loadModel, serializeModel } from '../src/ir/index.js';
import { parseDevice } from '../src/runtime/device.js';
import { createSession } from '../src/runtime/session.js';
import { buildStepGraph } from '../src/train/step-graph.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TORCH_PYTHON = '/usr/bin/python3';

interface Side {
  imagesPerSecond: number;
  msPerStep: number;
  peakRssMiB: number;
  [k: string]: unknown;
}

const MODELS = [
  { name: 'resnet56', file: path.join(REPO, '..', 'shared', 'models', 'resnet56-cifar10.onnx'), target: 0.7 },
  { name: 'mobilenetv2 (fixture)', file: path.join(REPO, 'fixtures', 'mobilenetv2.onnx'), target: 0.35 },
];

export async function run(): Promise<object> {
  const batch = 128;
  const threads = Number(process.env.BENCH_THREADS ?? 2);
  const steps = Number(process.env.BENCH_TRAIN_STEPS ?? 5);
  const device = process.env.BENCH_DEVICE ?? 'cpu';
  const torchMissing = torchUnavailable();
  const results = [];
  for (const m of MODELS) {
    if (!fs.existsSync(m.file)) {
      results.push({ model: m.name, skipped: `${m.file} is absent` });
      continue;
    }
    const child = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        fileURLToPath(import.meta.url),
        '--child',
        m.file,
        String(batch),
        String(threads),
        String(steps),
        device,
      ],
      { encoding: 'utf8', cwd: REPO },
    );
    if (child.status !== 0) throw new Error(`onnxruntime side failed: ${child.stderr}`);
    const onnxruntime = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as Side;
    let torch: Side | { skipped: string } = { skipped: torchMissing ?? '' };
    if (!torchMissing) {
      const out = execFileSync(
        TORCH_PYTHON,
        [
          path.join(REPO, 'bench', 'train_torch.py'),
          m.file,
          '--batch',
          String(batch),
          '--threads',
          String(threads),
          '--steps',
          String(Math.max(2, Math.ceil(steps / 2))),
          '--warmup',
          '1',
        ],
        { encoding: 'utf8' },
      );
      torch = JSON.parse(out.trim().split('\n').at(-1)!) as Side;
    }
    const ratio =
      'imagesPerSecond' in torch ? onnxruntime.imagesPerSecond / torch.imagesPerSecond : undefined;
    results.push({
      model: m.name,
      batch,
      threads,
      device,
      onnxruntime,
      torch,
      ratio,
      target: m.target,
      meetsTarget: ratio === undefined ? undefined : ratio >= m.target,
    });
  }
  return { benchmark: 'train', results };
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
  const step = await buildStepGraph(model, { batchSize: batch });
  const buildMs = performance.now() - buildStart;
  const sessionStart = performance.now();
  const session = await createSession(serializeModel(step.model), { threads, device: parseDevice(device) });
  const sessionMs = performance.now() - sessionStart;
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
  for (const p of step.params) {
    feeds[p.name] = new ort.Tensor('float32', Float32Array.from(init.get(p.name)!), p.shape);
    if (p.momentum)
      feeds[p.momentum.input] = new ort.Tensor(
        'float32',
        new Float32Array(init.get(p.name)!.length),
        p.shape,
      );
  }
  for (const r of step.runningStats)
    feeds[r.name] = new ort.Tensor('float32', Float32Array.from(init.get(r.name)!), r.shape);
  const carried = [
    ...step.params.map((p) => [p.updated, p.name] as const),
    ...step.params.flatMap((p) => (p.momentum ? [[p.momentum.output, p.momentum.input] as const] : [])),
    ...step.runningStats.map((r) => [r.updated, r.name] as const),
  ];
  const once = async (): Promise<number> => {
    const t = performance.now();
    const out = await session.session.run(feeds);
    const ms = performance.now() - t;
    for (const [from, to] of carried) feeds[to] = out[from] as ort.Tensor;
    return ms;
  };
  await once(); // warm-up: first-run allocations
  let runMs = 0;
  const start = performance.now();
  for (let i = 0; i < steps; i++) runMs += await once();
  const totalMs = performance.now() - start;
  await session.release();
  const paramFloats = step.params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
  console.log(
    JSON.stringify({
      imagesPerSecond: (batch * steps * 1000) / totalMs,
      msPerStep: totalMs / steps,
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
