import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { decodeModel, loadModel, serializeModel, type Model } from '../src/ir/index.js';
import { choleskyInPlace, choleskySolveInPlace, solveSpd } from '../src/linalg/cholesky.js';
import { cleanupPipeline } from '../src/passes/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import { compensateModel, compensationTargets, type InputBatch } from '../src/prune/compensate.js';
import { analyzeModel, pruneModel } from '../src/prune/index.js';
import { probeInputDims, randomInputs } from '../src/shapes/probe.js';

// dense/unet_convt: a UNet whose decoder upsamples by ConvTranspose (2x2, stride 2), re-fitted like a conv.
const FIXTURES = ['vgg', 'resnet_a', 'mobilenetv2', 'densenet', 'dense/unet_convt'];

/** Seeded inputs for a model: `count` batches of `size`. */
function inputBatches(model: Model, count: number, size: number, seed: number): InputBatch[] {
  const dims = probeInputDims(model);
  const [name, d] = [...dims][0]!;
  const shape = [size, ...d.slice(1)];
  return Array.from({ length: count }, (_, i) => {
    const t = randomInputs(model, new Map([[name, shape]]), seed + i)[name]!;
    return { data: t.data as Float32Array, shape };
  });
}

/** Runs `model` on `batch` and returns the named values (exposed as extra outputs of a copy). */
async function runValues(model: Model, batch: InputBatch, names: string[]): Promise<Float32Array[]> {
  const g = model.graph;
  const saved = [...g.outputs];
  const byName = g.valueByName();
  for (const n of names) if (!saved.some((v) => v.name === n)) g.outputs.push(byName.get(n)!);
  const bytes = serializeModel(model);
  g.outputs.length = 0;
  g.outputs.push(...saved);
  const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'disabled' });
  try {
    const input = g.inputs.find((v) => !v.isInitializer)!.name;
    const out = await session.run({ [input]: new ort.Tensor('float32', batch.data, batch.shape) }, names);
    return names.map((n) => out[n]!.data as Float32Array);
  } finally {
    await session.release();
  }
}

test('Cholesky solve matches a direct check A·X = B (with and without a ridge towards a prior)', () => {
  const n = 5;
  const m = 2;
  const r = new Float64Array(n * n).map((_, i) => Math.sin(i * 1.7) + (i % (n + 1) === 0 ? 3 : 0));
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) a[i * n + j]! += r[i * n + k]! * r[j * n + k]!;
  const b = new Float64Array(n * m).map((_, i) => Math.cos(i));
  const x = solveSpd(a, n, b, m);
  for (let i = 0; i < n; i++)
    for (let c = 0; c < m; c++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += a[i * n + j]! * x[j * m + c]!;
      assert.ok(Math.abs(s - b[i * m + c]!) < 1e-9, `row ${i}: ${s} vs ${b[i * m + c]}`);
    }
  // (A + λI)·X = B + λ·P: with B = A·P the solution is P whatever λ is.
  const p = new Float64Array(n * m).map((_, i) => i - 3);
  const ap = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let c = 0; c < m; c++) for (let j = 0; j < n; j++) ap[i * m + c]! += a[i * n + j]! * p[j * m + c]!;
  const y = solveSpd(a, n, ap, m, 5, p);
  y.forEach((v, i) => assert.ok(Math.abs(v - p[i]!) < 1e-9));
  // A singular matrix fails the plain factorisation.
  const singular = new Float64Array([1, 1, 1, 1]);
  assert.equal(choleskyInPlace(Float64Array.from(singular), 2), false);
  const l = Float64Array.from([4, 2, 2, 3]);
  assert.ok(choleskyInPlace(l, 2));
  const rhs = new Float64Array([2, 1]);
  choleskySolveInPlace(l, 2, rhs, 1);
  assert.ok(
    Math.abs(4 * rhs[0]! + 2 * rhs[1]! - 2) < 1e-12 && Math.abs(2 * rhs[0]! + 3 * rhs[1]! - 1) < 1e-12,
  );
});

for (const name of FIXTURES) {
  test(`${name}: compensation of every layer at keep-all reproduces the unpruned output`, async () => {
    const model = loadModel(`fixtures/${name}.onnx`);
    const analysis = await analyzeModel(model);
    const keep = analysis.groups.map((g) => new Uint8Array(g.size).fill(1));
    // At keep-all no input lost channels: every conv/Gemm/MatMul becomes a target by hand.
    const targets = analysis.records.flatMap((r) => {
      const use = r.op.linearUse?.(r.node, r.data);
      if (!use || typeof use === 'string') return [];
      return [
        {
          output: r.node.outputs[0]!.name,
          node: r.node.name,
          op: r.node.opType,
          outKept: Array.from({ length: use.output.size }, (_, i) => i),
        },
      ];
    });
    assert.equal(compensationTargets(analysis, keep).length, 0, 'keep-all has no pruned consumers');
    assert.equal(compensationTargets(analysis, keep, 'downstream').length, 0, 'nothing drifted at keep-all');
    assert.ok(targets.length >= 3);
    if (name.includes('convt')) assert.ok(targets.some((t) => t.op === 'ConvTranspose'));
    const fit = inputBatches(model, 2, 16, 11);
    const heldOut = inputBatches(model, 1, 16, 21);
    const { model: out, report } = await compensateModel(model, model, targets, { fit, heldOut });
    assert.equal(report.layers.length, targets.length);
    // The solve reproduces every layer's targets on held-out inputs (float32 statistics: 1e-5 relative).
    for (const l of report.layers) assert.ok(l.errorAfter < 1e-5, `${l.node}: ${l.errorAfter}`);
    const check = inputBatches(model, 1, 4, 31)[0]!;
    const outputs = model.graph.outputs.map((v) => v.name);
    const [a] = await runValues(model, check, outputs);
    const [b] = await runValues(out, check, outputs);
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < a!.length; i++) {
      scale = Math.max(scale, Math.abs(a![i]!));
      diff = Math.max(diff, Math.abs(a![i]! - b![i]!));
    }
    assert.ok(diff <= 1e-5 * Math.max(1, scale), `max |diff| ${diff} (output scale ${scale})`);
  });

  for (const scope of ['consumers', 'downstream'] as const)
    test(`${name}: at 50% MACs every fitted layer's held-out reconstruction error goes down (${scope})`, async () => {
      const model = loadModel(`fixtures/${name}.onnx`);
      const original = serializeModel(model);
      const planned = await pruneModel(model, { flops: 0.5, validate: false, compensationScope: scope });
      const { model: pruned, targets } = planned;
      const active = targets.filter((t) => !t.skip);
      assert.ok(active.length > 0, 'the prune leaves consumers of pruned spaces');
      if (scope === 'downstream') {
        // Every consumer stays a target; the others are layers after the first consumer, in graph order.
        const consumers = (await pruneModel(model, { flops: 0.5, validate: false })).targets;
        const names = new Set(targets.map((t) => t.node));
        for (const t of consumers) assert.ok(names.has(t.node), `${t.node} is still a target`);
        const order = new Map(pruned.graph.nodes.map((n, i) => [n.name, i]));
        const firstConsumer = Math.min(...consumers.map((t) => order.get(t.node)!));
        for (const t of targets) assert.ok(order.get(t.node)! >= firstConsumer, `${t.node} is downstream`);
        // In these two, layers after the first consumer read unpruned but drifted channels (the classifier).
        if (name === 'vgg' || name === 'resnet_a')
          assert.ok(targets.length > consumers.length, 'drifted layers join');
      }
      const fit = inputBatches(pruned, 4, 32, 101);
      const heldOut = inputBatches(pruned, 2, 32, 201);
      const { model: compensated, report } = await compensateModel(pruned, original, targets, {
        fit,
        heldOut,
      });
      assert.equal(report.layers.length, active.length);
      if (name.includes('convt'))
        assert.ok(
          report.layers.some((l) => l.op === 'ConvTranspose' && l.kept),
          'a ConvTranspose fit is kept',
        );
      for (const l of report.layers) if (l.kept) assert.ok(l.errorAfter < l.errorBefore, l.node);
      assert.ok(
        report.layers.some((l) => l.kept),
        'some fit is kept',
      );
      // Independently, on fresh inputs: each kept layer's output is closer to the unpruned one than before.
      const check = inputBatches(pruned, 1, 32, 301)[0]!;
      const kept = report.layers.filter((l) => l.kept);
      const names = kept.map((l) => active.find((t) => t.node === l.node)!.output);
      const ref = await runValues(decodeModel(original), check, names);
      const before = await runValues(pruned, check, names);
      const after = await runValues(compensated, check, names);
      kept.forEach((l, i) => {
        const t = active.find((x) => x.node === l.node)!;
        const eBefore = error(ref[i]!, before[i]!, t.outKept, check.shape[0]!);
        const eAfter = error(ref[i]!, after[i]!, t.outKept, check.shape[0]!);
        assert.ok(eAfter < eBefore, `${l.node}: ${eAfter} >= ${eBefore}`);
      });
    });
}

/** Squared error between the kept channels of the original output and the pruned output (channel axis 1). */
function error(ref: Float32Array, out: Float32Array, kept: number[], n: number): number {
  const all = ref.length / n;
  const per = out.length / n;
  const channels = all / (per / kept.length);
  const inner = all / channels;
  let e = 0;
  for (let i = 0; i < n; i++)
    kept.forEach((c, j) => {
      for (let p = 0; p < inner; p++) {
        const d = ref[(i * channels + c) * inner + p]! - out[(i * kept.length + j) * inner + p]!;
        e += d * d;
      }
    });
  return e;
}

for (const name of ['resnet_a', 'densenet']) {
  test(`${name}: passes resumed from held activations fit exactly what passes from the images fit`, async () => {
    const model = loadModel(`fixtures/${name}.onnx`);
    const original = serializeModel(model);
    const { model: pruned, targets } = await pruneModel(model, {
      flops: 0.5,
      validate: false,
      compensationScope: 'downstream',
    });
    const data = { fit: inputBatches(pruned, 3, 16, 401), heldOut: inputBatches(pruned, 1, 16, 501) };
    const fromImages = await compensateModel(pruned, original, targets, data, { frontierBytes: 0 });
    const resumed = await compensateModel(pruned, original, targets, data);
    assert.equal(fromImages.report.resumed, 0);
    assert.equal(resumed.report.resumed, resumed.report.waves - 1, 'every pass after the first resumes');
    resumed.report.layers.forEach((l, i) => {
      const o = fromImages.report.layers[i]!;
      assert.equal(l.node, o.node);
      assert.equal(l.kept, o.kept, l.node);
      // A cut session fuses and orders float32 work differently, and the solve amplifies it: 1e-4 relative.
      assert.ok(Math.abs(l.errorAfter - o.errorAfter) <= 1e-4 * o.errorAfter + 1e-7, l.node);
    });
    const check = inputBatches(pruned, 1, 4, 601)[0]!;
    const outputs = pruned.graph.outputs.map((v) => v.name);
    const [a] = await runValues(fromImages.model, check, outputs);
    const [b] = await runValues(resumed.model, check, outputs);
    a!.forEach((v, i) => assert.ok(Math.abs(v - b![i]!) <= 1e-4 * Math.max(1, Math.abs(v)), `output ${i}`));
  });
}

test('downstream compensation leaves alone a layer that decodes a frozen format (a detector head DFL)', async () => {
  const model = loadModel('fixtures/trained/det.onnx');
  const dfl = model.graph.nodes.find((n) => n.opType === 'Conv' && n.name.includes('/dfl/'));
  assert.ok(dfl, 'the fixture has a DFL conv');
  const { targets } = await pruneModel(model, {
    flops: 0.5,
    validate: false,
    compensationScope: 'downstream',
  });
  const names = new Set(targets.map((t) => t.node));
  assert.ok(!names.has(dfl.name), `${dfl.name} is not re-fitted`);
  // The head's other layers after the first consumer still are: the class and box convs read features.
  assert.ok(
    targets.some((t) => t.node.includes('/model.22/cv3.')),
    'the head convs stay targets',
  );
});

test('a sequence-first transformer compensates from batches of unequal size as from one batch of the same images', async () => {
  // The trained ViT: torch exports nn.MultiheadAttention's projections as [T, N, E], the batch second, and a
  // compensation pool that is not a multiple of the batch ends in a smaller batch.
  const model = loadModel('fixtures/trained/vit.onnx');
  cleanupPipeline(new PassManager(), model);
  const original = serializeModel(model);
  const { model: pruned, targets } = await pruneModel(model, {
    flops: 0.5,
    validate: false,
    inputShapes: { input: [1, 1, 28, 28] },
  });
  const [all] = inputBatches(pruned, 1, 8, 701);
  const per = all!.data.length / 8;
  const part = (from: number, to: number): InputBatch => ({
    data: all!.data.slice(from * per, to * per),
    shape: [to - from, ...all!.shape.slice(1)],
  });
  const heldOut = inputBatches(pruned, 1, 4, 801);
  const whole = await compensateModel(pruned, original, targets, { fit: [all!], heldOut });
  const split = await compensateModel(pruned, original, targets, { fit: [part(0, 6), part(6, 8)], heldOut });
  assert.ok(whole.report.layers.length > 0);
  assert.equal(split.report.layers.length, whole.report.layers.length);
  split.report.layers.forEach((l, i) => {
    const w = whole.report.layers[i]!;
    assert.equal(l.node, w.node);
    assert.equal(l.kept, w.kept, l.node);
    assert.ok(
      Math.abs(l.errorAfter - w.errorAfter) <= 1e-3 * w.errorAfter + 1e-6,
      `${l.node}: ${l.errorAfter} vs ${w.errorAfter}`,
    );
  });
});
