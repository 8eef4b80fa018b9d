/**
 * Prune (load, analyse, search, slice, validate, save) of ResNet-50- and MobileNetV2-sized models, as a ratio
 * to load+save alone, plus peak RSS against the file size and the width search's steps. The models are the
 * torchvision structure-only fixtures with random weights (BN-folded exports, so the filter-norm fallback
 * applies). Each measurement runs in its own process so its peak RSS is its own; each is repeated and the
 * fastest run is reported (on a shared 2-core machine single runs vary by 2x), with its stage times.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataType, loadModel, saveModel } from '../src/ir/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import { pruneModel } from '../src/prune/index.js';

const HERE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(HERE), '..');

export function materialise(name: string, dir: string): string {
  const model = loadModel(path.join(REPO, 'fixtures', 'torchvision', `${name}.onnx`));
  let s = 12345;
  const rand = (): number => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  for (const v of model.graph.initializers) {
    const t = v.initializer!;
    if (t.dataType !== DataType.FLOAT) continue;
    const fanIn = t.dims.length > 1 ? t.size / t.dims[0]! : 1;
    const scale = 2 / Math.sqrt(fanIn);
    const d = new Float32Array(t.size);
    for (let i = 0; i < d.length; i++) d[i] = rand() * scale;
    t.setData(d);
  }
  const file = path.join(dir, `${name}.onnx`);
  saveModel(model, file);
  return file;
}

async function child(mode: string, file: string, out: string): Promise<void> {
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  const model = loadModel(file);
  let search: unknown;
  const stages: Record<string, number> = {};
  if (mode === 'prune') {
    const pm = new PassManager();
    const { report } = await pruneModel(model, { flops: 0.5, passManager: pm });
    search = {
      steps: report.search!.steps,
      msPerStep: report.search!.msPerStep,
      fillSteps: report.search!.fillSteps,
      achieved: report.pruned.macs / report.original.macs,
    };
    for (const t of pm.timings) stages[t.pass] = Math.round((stages[t.pass] ?? 0) + t.ms);
    const v = report.validation!;
    Object.assign(stages, {
      'validate:session': Math.round(v.sessionMs),
      'validate:run': Math.round(v.runMs),
    });
  }
  saveModel(model, out);
  const ms = performance.now() - start;
  const cpu = process.cpuUsage(cpuStart);
  console.log(
    JSON.stringify({
      ms,
      cpuMs: (cpu.user + cpu.system) / 1000,
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
      search,
      stages,
    }),
  );
}

interface Measurement {
  ms: number;
  /** User + system CPU time of all threads (onnxruntime runs on several). */
  cpuMs: number;
  maxRssBytes: number;
  search?: { steps: number; msPerStep: number; fillSteps: number; achieved: number };
  stages: Record<string, number>;
}

const REPEATS = 3;

function measure(mode: string, file: string, out: string): Measurement {
  const runs = Array.from({ length: REPEATS }, (): Measurement => {
    const stdout = execFileSync(process.execPath, ['--import', 'tsx', HERE, '--child', mode, file, out], {
      cwd: REPO,
      encoding: 'utf8',
    });
    return JSON.parse(stdout.trim().split('\n').pop()!);
  });
  const fastest = runs.reduce((a, b) => (b.ms < a.ms ? b : a));
  return {
    ...fastest,
    cpuMs: Math.min(...runs.map((r) => r.cpuMs)),
    maxRssBytes: Math.min(...runs.map((r) => r.maxRssBytes)),
  };
}

export async function run(): Promise<object> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-bench-prune-'));
  const results: Record<string, unknown> = {};
  try {
    for (const name of ['resnet50', 'mobilenet_v2']) {
      const file = materialise(name, dir);
      const bytes = fs.statSync(file).size;
      const base = measure('io', file, path.join(dir, `${name}-io.onnx`));
      const prune = measure('prune', file, path.join(dir, `${name}-pruned.onnx`));
      results[name] = {
        fileBytes: bytes,
        loadSaveMs: Math.round(base.ms),
        pruneMs: Math.round(prune.ms),
        timeRatio: +(prune.ms / base.ms).toFixed(2),
        timeTarget: '<= 2x',
        cpuTimeRatio: +(prune.cpuMs / base.cpuMs).toFixed(2),
        peakRssRatio: +(prune.maxRssBytes / bytes).toFixed(2),
        peakRssTarget: '<= 3x the file',
        loadSavePeakRssRatio: +(base.maxRssBytes / bytes).toFixed(2),
        bisectionSteps: prune.search!.steps,
        msPerBisectionStep: +prune.search!.msPerStep.toFixed(4),
        fillSteps: prune.search!.fillSteps,
        achievedMacRatio: +prune.search!.achieved.toFixed(4),
        pruneStagesMs: prune.stages,
      };
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

if (process.argv[2] === '--child') await child(process.argv[3]!, process.argv[4]!, process.argv[5]!);
