import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { batches, type Batch } from '../src/data/batches.js';
import type { Dataset } from '../src/data/dataset.js';
import { openDataset } from '../src/data/open.js';
import { PRESETS } from '../src/data/preprocess.js';
import { median } from '../src/runtime/benchmark.js';
import { evaluate } from '../src/runtime/evaluate.js';
import { createSession, type ModelSession } from '../src/runtime/session.js';

const SHARED = fileURLToPath(new URL('../../shared/', import.meta.url));
const MODEL = join(SHARED, 'models/resnet56-cifar10.onnx');
const DATA = join(SHARED, 'data/cifar10-jpg.tar');
const ROUNDS = 3;
const BATCH = 256;
const spec = PRESETS.cifar10;

/**
 * End-to-end eval throughput (JPEG decode, preprocessing and inference, as `adapruner eval` runs it) against a
 * bare onnxruntime loop over the same images already decoded into tensors, with the same session.
 *
 * `ratio` is the cold figure: every JPEG decoded again in every pass (decoded-image cache off), which is
 * what one `adapruner eval` does. `warmRatio` is a repeated pass over the same images with the cache on, as
 * fine-tuning epochs and repeated validation get. Bare and end-to-end passes alternate within one process
 * (order swapped every round) so that other load on the machine hits both alike; each side takes the median.
 * CPU seconds of the process are reported too: they are less sensitive to other load than wall time.
 */
export async function run(): Promise<object> {
  if (!existsSync(MODEL) || !existsSync(DATA)) return { skipped: '../shared is absent' };
  const cold = await openDataset(DATA, { split: 'test', decodedCacheBytes: 0 });
  const session = await createSession(MODEL);
  const tensors: Batch[] = [];
  for await (const batch of batches(cold, { spec, batchSize: BATCH })) tensors.push(batch);
  await session.run(tensors[0]!.images, tensors[0]!.shape); // warm-up: arena and kernels

  const bare: Pass[] = [];
  const endToEnd: Pass[] = [];
  let top1 = 0;
  const runBare = async () =>
    bare.push(
      await timed(async () => {
        for (const b of tensors) await session.run(b.images, b.shape);
      }),
    );
  const runEndToEnd = async () =>
    endToEnd.push(await timed(async () => (top1 = (await evaluateAll(session, cold)).top1)));
  for (let round = 0; round < ROUNDS; round++) {
    for (const pass of round % 2 === 0 ? [runBare, runEndToEnd] : [runEndToEnd, runBare]) await pass();
    process.stderr.write(
      `round ${round + 1}/${ROUNDS}: bare ${show(bare.at(-1)!)}, end-to-end ${show(endToEnd.at(-1)!)}\n`,
    );
  }

  const cached = await openDataset(DATA, { split: 'test' });
  await evaluateAll(session, cached); // fills the decoded-image cache
  const warm = await timed(() => evaluateAll(session, cached));
  const warmBare = await timed(async () => {
    for (const b of tensors) await session.run(b.images, b.shape);
  });
  process.stderr.write(`warm: bare ${show(warmBare)}, end-to-end ${show(warm)}\n`);
  await session.release();

  const images = cold.length;
  const bareSeconds = median(bare.map((p) => p.seconds));
  const endToEndSeconds = median(endToEnd.map((p) => p.seconds));
  return {
    model: 'resnet56-cifar10.onnx',
    images,
    batch: BATCH,
    top1,
    bareImagesPerSecond: images / bareSeconds,
    endToEndImagesPerSecond: images / endToEndSeconds,
    ratio: bareSeconds / endToEndSeconds,
    target: 0.87,
    cpuRatio: median(bare.map((p) => p.cpuSeconds)) / median(endToEnd.map((p) => p.cpuSeconds)),
    warmRatio: warmBare.seconds / warm.seconds,
    bare,
    endToEnd,
    warm: { bare: warmBare, endToEnd: warm },
  };
}

interface Pass {
  seconds: number;
  cpuSeconds: number;
}

function evaluateAll(session: ModelSession, dataset: Dataset) {
  return evaluate(session, dataset, { spec, batchSize: BATCH });
}

async function timed(work: () => Promise<unknown>): Promise<Pass> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  await work();
  const used = process.cpuUsage(cpu);
  return { seconds: (performance.now() - started) / 1000, cpuSeconds: (used.user + used.system) / 1e6 };
}

function show(p: Pass): string {
  return `${p.seconds.toFixed(2)} s (cpu ${p.cpuSeconds.toFixed(2)} s)`;
}
