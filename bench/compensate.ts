import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { fileURLToPath } from 'node:url';
import { batches } from '../src/data/batches.js';
import { openDataset } from '../src/data/open.js';
import { PRESETS } from '../src/data/preprocess.js';
import { shuffledIndices } from '../src/data/subset.js';
import { loadModel, serializeModel } from '../src/ir/index.js';
import { cleanupPipeline } from '../src/passes/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import { compensateModel, type InputBatch } from '../src/prune/compensate.js';
import { pruneModel } from '../src/prune/index.js';
import { createSession } from '../src/runtime/session.js';

/**
 * Least-squares compensation of the shared ResNet-56 at 50% MACs (structural widths, l1, round to 8) on 1,000
 * CIFAR-10 training images, 2 threads, against a baseline measured in the same run: one inference pass of the
 * unpruned network over the same images. Reports wall and CPU seconds of both; the CPU ratio is what a loaded
 * machine distorts least.
 */
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SHARED = path.join(HERE, '..', '..', 'shared');

export async function run(): Promise<object> {
  const modelFile = path.join(SHARED, 'models', 'resnet56-cifar10.onnx');
  const dataFile = path.join(SHARED, 'data', 'cifar10-jpg.tar');
  if (!fs.existsSync(modelFile) || !fs.existsSync(dataFile))
    return { skipped: `needs ${modelFile} and ${dataFile}` };
  const runtime = { threads: 2 };
  const original = loadModel(modelFile);
  cleanupPipeline(new PassManager(), original);
  const originalBytes = serializeModel(original);
  const pruned = loadModel(modelFile);
  cleanupPipeline(new PassManager(), pruned);
  const planFor = (compensationScope: 'consumers' | 'downstream') =>
    pruneModel(pruned, {
      flops: 0.5,
      widths: 'structural',
      roundTo: 8,
      criterion: 'l1',
      validate: false,
      compensationScope,
    });
  const train = await openDataset(dataFile, { split: 'train' });
  const loaded: InputBatch[] = [];
  const indices = shuffledIndices(train.length, 0).subarray(0, 1000);
  for await (const b of batches(train, { spec: PRESETS.cifar10, batchSize: 100, indices }))
    loaded.push({ data: b.images, shape: [...b.shape] });

  const measure = async (fn: () => Promise<unknown>) => {
    const cpu = process.cpuUsage();
    const t = performance.now();
    await fn();
    const used = process.cpuUsage(cpu);
    return { wallSeconds: (performance.now() - t) / 1000, cpuSeconds: (used.user + used.system) / 1e6 };
  };
  const baseline = await measure(async () => {
    const s = await createSession(originalBytes, runtime);
    for (const b of loaded)
      await s.session.run({ [s.inputName]: new ort.Tensor('float32', b.data, b.shape) });
    await s.release();
  });
  // Each scope with the activations kept between passes (the default) and without (the pruned model's inputs
  // re-run the network from the images every pass, and the original's targets once per 256 MB of them: the
  // implementation before LayerInputs): the two must agree on what they fit.
  const arms: Record<string, object> = {};
  for (const scope of ['consumers', 'downstream'] as const) {
    const { model, targets } = await planFor(scope);
    for (const frontierBytes of [0, undefined]) {
      let report: Awaited<ReturnType<typeof compensateModel>>['report'] | undefined;
      const m = await measure(async () => {
        report = (
          await compensateModel(
            model,
            originalBytes,
            targets,
            { fit: loaded.slice(0, 8), heldOut: loaded.slice(8) },
            { runtime, frontierBytes },
          )
        ).report;
      });
      arms[`${scope}, ${frontierBytes === 0 ? 'from the images each pass' : 'frontier kept'}`] = {
        layers: report!.layers.length,
        passes: report!.waves,
        ...m,
        ratioToForwardPass: {
          wall: m.wallSeconds / baseline.wallSeconds,
          cpu: m.cpuSeconds / baseline.cpuSeconds,
        },
        heldOutErrorAfter: report!.layers.reduce((a, l) => a + l.errorAfter, 0) / report!.layers.length,
      };
    }
  }
  return { baselineForwardPass: baseline, arms };
}
