/**
 * Where a training step's time goes: onnxruntime's profiler (session option `enableProfiling`) on the compiled
 * step graph, per op type split into forward / BN-training / loss / backward / optimizer, and per Conv shape;
 * against torch.autograd.profiler on the same network (bench/train_torch.py --profile), forward vs backward.
 * Prints markdown tables (the ones in docs/finetune.md) and writes the raw aggregates as JSON.
 *
 * usage: tsx bench/train-profile.ts MODEL.onnx [--batch 128] [--threads 2] [--steps 2] [--no-torch]
 *        [--json OUT.json]
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadModel, serializeModel } from '../src/ir/index.js';
import { createSession } from '../src/runtime/session.js';
import { STEP_SESSION_OPTIONS, buildStepGraph } from '../src/train/step-graph.js';
import { syntheticFeeds, torchEnv } from './train.js';

/**
 * The first run fills onnxruntime's arena (and, with its memory pattern on, the second allocated and faulted in
 * one more block): such runs fault in fresh pages inside the kernels that write long-lived tensors (forward
 * outputs kept for the backward), which made forward Convs and BN ops look several times slower than they are.
 */
const WARMUP_RUNS = 2;

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface ProfileEvent {
  cat: string;
  name: string;
  dur: number;
  ts: number;
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[] };
}

export interface OpTime {
  phase: string;
  op: string;
  ms: number;
  count: number;
}

/** Which part of the step a node of the (optimised) step graph belongs to, from the builder's name prefixes. */
function phaseOf(node: string): string {
  if (node.startsWith('grad/')) return 'backward';
  if (node.startsWith('sgd/')) return 'optimizer';
  if (node.startsWith('loss/')) return 'loss';
  if (node.includes('/train/')) return 'forward (BN train)';
  if (/reorder|token|Transpose_|memcpy/i.test(node)) return 'layout';
  return 'forward';
}

const shapeKey = (e: ProfileEvent): string =>
  (e.args?.input_type_shape ?? [])
    .slice(0, 2)
    .map((t) => `[${Object.values(t)[0]!.join(',')}]`)
    .join(' ');

async function profileOnnxruntime(
  file: string,
  batch: number,
  threads: number,
  steps: number,
): Promise<{ byOp: OpTime[]; byConv: OpTime[]; msPerStep: number }> {
  const model = loadModel(file);
  const step = await buildStepGraph(model, { batchSize: batch });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-profile-'));
  const session = await createSession(serializeModel(step.model), {
    threads,
    overrides: { ...STEP_SESSION_OPTIONS, enableProfiling: true, profileFilePrefix: path.join(dir, 'ort') },
  });
  const feeds = syntheticFeeds(model, step, batch);
  const t0 = performance.now();
  for (let i = 0; i < steps + WARMUP_RUNS; i++) await session.session.run(feeds);
  const wallMs = performance.now() - t0;
  session.session.endProfiling();
  await session.release();
  const traceFile = fs.readdirSync(dir).map((f) => path.join(dir, f))[0]!;
  const events = JSON.parse(fs.readFileSync(traceFile, 'utf8')) as ProfileEvent[];
  fs.rmSync(dir, { recursive: true, force: true });
  // Skip every warm-up run, not just the first: with the memory pattern on, the second still faulted in pages
  // inside the forward Convs and the BN expansion, which made them look 4-5x slower than in a steady state.
  const runs = events
    .filter((e) => e.cat === 'Session' && e.name === 'model_run')
    .sort((a, b) => a.ts - b.ts);
  const lastWarmup = runs[WARMUP_RUNS - 1];
  const after = lastWarmup ? lastWarmup.ts + lastWarmup.dur : 0;
  const timed = runs.slice(WARMUP_RUNS);
  const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts >= after);
  const byOp = new Map<string, OpTime>();
  const byConv = new Map<string, OpTime>();
  for (const e of kernels) {
    const node = e.name.slice(0, -'_kernel_time'.length);
    const op = e.args?.op_name ?? '?';
    const phase = phaseOf(node);
    const k = `${phase}|${op}`;
    const t = byOp.get(k) ?? { phase, op, ms: 0, count: 0 };
    t.ms += e.dur / 1000 / timed.length;
    t.count += 1 / timed.length;
    byOp.set(k, t);
    if (/Conv|MatMul/.test(op)) {
      const ck = `${phase}|${op} ${shapeKey(e)}`;
      const c = byConv.get(ck) ?? { phase, op: `${op} ${shapeKey(e)}`, ms: 0, count: 0 };
      c.ms += e.dur / 1000 / timed.length;
      c.count += 1 / timed.length;
      byConv.set(ck, c);
    }
  }
  const sorted = (m: Map<string, OpTime>) => [...m.values()].sort((a, b) => b.ms - a.ms);
  const msPerStep = timed.reduce((a, r) => a + r.dur / 1000, 0) / timed.length || wallMs / steps;
  return { byOp: sorted(byOp), byConv: sorted(byConv), msPerStep };
}

function profileTorch(file: string, batch: number, threads: number): OpTime[] {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-profile-')), 'torch.json');
  const env = torchEnv(threads);
  const script = path.join(REPO, 'bench', 'train_torch.py');
  const args = [script, file, '--batch', String(batch), '--threads', String(threads), '--steps', '1'];
  const r = spawnSync('/usr/bin/python3', [...args, '--warmup', String(WARMUP_RUNS), '--profile', out], {
    encoding: 'utf8',
    env,
  });
  if (r.status !== 0) throw new Error(`torch profile failed: ${r.stderr}`);
  const rows = JSON.parse(fs.readFileSync(out, 'utf8')) as {
    name: string;
    selfCpuMs: number;
    count: number;
  }[];
  fs.rmSync(path.dirname(out), { recursive: true, force: true });
  return rows
    .filter((r) => r.selfCpuMs > 0.05)
    .map((r) => ({
      phase: /backward|Backward|AccumulateGrad/.test(r.name)
        ? 'backward'
        : /Optimizer|SGD|add_|mul_/.test(r.name)
          ? 'optimizer'
          : 'forward',
      op: r.name,
      ms: r.selfCpuMs,
      count: r.count,
    }));
}

function table(rows: OpTime[], limit: number, total: number): string {
  const lines = ['| phase | op | ms/step | calls | share |', '|---|---|---:|---:|---:|'];
  for (const r of rows.slice(0, limit))
    lines.push(
      `| ${r.phase} | ${r.op} | ${r.ms.toFixed(1)} | ${Math.round(r.count)} | ${((100 * r.ms) / total).toFixed(1)}% |`,
    );
  return lines.join('\n');
}

function byPhase(rows: OpTime[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rows) out[r.phase] = (out[r.phase] ?? 0) + r.ms;
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      batch: { type: 'string', default: '128' },
      threads: { type: 'string', default: '2' },
      steps: { type: 'string', default: '2' },
      'no-torch': { type: 'boolean', default: false },
      json: { type: 'string' },
    },
  });
  const file = positionals[0];
  if (!file) {
    console.error('usage: tsx bench/train-profile.ts MODEL.onnx [--batch N] [--threads N] [--steps N]');
    process.exit(2);
  }
  const [batch, threads, steps] = [values.batch, values.threads, values.steps].map(Number) as [
    number,
    number,
    number,
  ];
  const ortProfile = await profileOnnxruntime(file, batch, threads, steps);
  const kernelMs = ortProfile.byOp.reduce((a, r) => a + r.ms, 0);
  console.log(
    `## onnxruntime: ${ortProfile.msPerStep.toFixed(0)} ms/step, kernels ${kernelMs.toFixed(0)} ms`,
  );
  console.log('by phase (ms):', JSON.stringify(byPhase(ortProfile.byOp)));
  console.log(table(ortProfile.byOp, 25, kernelMs));
  console.log('\n### Conv / MatMul by shape (inputs X, W)');
  console.log(table(ortProfile.byConv, 20, kernelMs));
  let torchRows: OpTime[] = [];
  if (!values['no-torch']) {
    torchRows = profileTorch(file, batch, threads);
    const torchMs = torchRows.reduce((a, r) => a + r.ms, 0);
    console.log(`\n## torch (self CPU, one step): ${torchMs.toFixed(0)} ms`);
    console.log('by phase (ms):', JSON.stringify(byPhase(torchRows)));
    console.log(table(torchRows, 15, torchMs));
  }
  if (values.json)
    fs.writeFileSync(values.json, JSON.stringify({ onnxruntime: ortProfile, torch: torchRows }, null, 1));
}
