import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataType, loadModel, saveModel } from '../src/ir/index.js';
import { storageOf, arrayLength } from '../src/ir/data-type.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const STRUCTURE = path.join(HERE, '..', 'fixtures', 'torchvision', 'resnet50.onnx');
const ROUNDS = Number(process.env.XROUNDS ?? 3);

/**
 * ONNX load + save of a ResNet-50-sized model (~100 MB, made here: the torchvision structure with random
 * float32 weights, saved inline) against a plain copy of the same bytes (read + write + fsync: saveModel
 * fsyncs too). Each measurement runs in a fresh child process so its peak RSS is clean; rounds alternate
 * the two and the ratio uses medians. Targets: time ratio <= 3, peak RSS <= 2.5x the file size.
 */
export async function run(): Promise<object> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-bench-io-'));
  try {
    const model = path.join(dir, 'resnet50-random.onnx');
    makeModel(model);
    const fileBytes = fs.statSync(model).size;
    const io: Child[] = [];
    const copy: Child[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? (['io', 'copy'] as const) : (['copy', 'io'] as const);
      for (const mode of order) {
        const out = path.join(dir, `out-${mode}-${r}.onnx`);
        (mode === 'io' ? io : copy).push(child(mode, model, out));
        if (mode === 'io' && r === 0 && !fs.readFileSync(out).equals(fs.readFileSync(model)))
          throw new Error('load + save did not reproduce the file byte for byte');
        fs.rmSync(out);
      }
    }
    const idle = child('idle');
    const ioMs = median(io.map((c) => c.ms));
    const copyMs = median(copy.map((c) => c.ms));
    const ioRss = Math.max(...io.map((c) => c.maxRssBytes));
    return {
      fileMB: round(fileBytes / 1e6),
      rounds: ROUNDS,
      loadSaveMs: round(ioMs),
      copyMs: round(copyMs),
      timeRatio: round(ioMs / copyMs),
      timeTarget: 3,
      peakRssMB: round(ioRss / 1e6),
      copyPeakRssMB: round(Math.max(...copy.map((c) => c.maxRssBytes)) / 1e6),
      idleProcessRssMB: round(idle.maxRssBytes / 1e6),
      rssRatio: round(ioRss / fileBytes),
      rssTarget: 2.5,
      met: ioMs / copyMs <= 3 && ioRss / fileBytes <= 2.5,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The resnet50 structure with every initializer given seeded random data of its dims, saved inline. */
function makeModel(file: string): void {
  const model = loadModel(STRUCTURE);
  let seed = 12345;
  for (const v of model.graph.initializers) {
    const t = v.initializer!;
    const storage = storageOf(t.dataType)!;
    const data = new storage.array(arrayLength(t.dataType, t.size));
    if (t.dataType === DataType.FLOAT) {
      const f = data as Float32Array;
      for (let i = 0; i < f.length; i++) {
        seed = (Math.imul(seed, 1664525) + 1013904223) | 0;
        f[i] = (seed >>> 8) / 2 ** 24 - 0.5;
      }
    }
    t.setData(data);
  }
  saveModel(model, file);
}

interface Child {
  ms: number;
  maxRssBytes: number;
}

function child(mode: string, input = '', output = ''): Child {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', path.join(HERE, 'io-child.ts'), mode, input, output],
    {
      encoding: 'utf8',
      maxBuffer: 1 << 20,
    },
  );
  if (r.status !== 0) throw new Error(`bench child '${mode}' failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Child;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const round = (x: number): number => Math.round(x * 100) / 100;
