/**
 * Detectors, segmenters and dynamic-shape exports (fixtures/dense, made by fixtures/make_dense.py from
 * YOLOv8-style modules written after ultralytics and torchvision's segmentation classes at small size):
 * onnxruntime equals PyTorch, inspect's MACs equal the hook count and the count from onnxruntime's own
 * shapes, at most 3% of the MACs sit in layers whose filters cannot shrink, and every budget lands within
 * 0.5% under it with a model that equals the masked original, keeps its output shapes (and its dynamic
 * input), has no zero-sized tensor and passes the ONNX checker.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { frozenBreakdown } from '../src/analysis/frozen-share.js';
import { countCostProbed, measureCost } from '../src/analysis/cost.js';
import {
  DataType,
  Graph,
  Model,
  Node,
  Tensor,
  Value,
  intsAttr,
  saveModel,
  serializeModel,
  tensorType,
} from '../src/ir/index.js';
import { cleanupPipeline } from '../src/passes/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import { analyzeModel, pruneModel, type Plan } from '../src/prune/index.js';
import { probeModel, randomInputs } from '../src/shapes/probe.js';
import { fixture, runCli, tmpDir } from './helpers.js';
import { load, maskRemovedChannels, maskRemovedInputs, maxAbsDiff } from './prune-helpers.js';

interface DenseRef {
  macs: number;
  inputName: string;
  outputNames: string[];
  bin: {
    arrays: Record<string, { byteOffset: number; numel: number; shape: number[] }>;
    extraInputs?: {
      inputShape: number[];
      arrays: Record<string, { byteOffset: number; numel: number; shape: number[] }>;
    }[];
  };
}

interface DenseCase {
  file: string;
  ref: string;
  /** The shape to analyse a dynamic export at (`--input-shape`). */
  shape?: number[];
  /** Whether issue 28's bound (at most 3% of the MACs in layers whose filters cannot shrink) applies. */
  filterBound: boolean;
}

const CASES: DenseCase[] = [
  { file: 'yolo_det.onnx', ref: 'yolo_det', filterBound: true },
  { file: 'yolo_det-opset12.onnx', ref: 'yolo_det', filterBound: true },
  { file: 'yolo_det-opset17.onnx', ref: 'yolo_det', filterBound: true },
  { file: 'yolo_det-dynamic.onnx', ref: 'yolo_det-dynamic', shape: [1, 3, 64, 64], filterBound: true },
  { file: 'deeplabv3_mnv3.onnx', ref: 'deeplabv3_mnv3', filterBound: true },
  { file: 'deeplabv3_mnv3-opset17.onnx', ref: 'deeplabv3_mnv3', filterBound: true },
  { file: 'lraspp_mnv3.onnx', ref: 'lraspp_mnv3', filterBound: true },
  { file: 'fcn_resnet.onnx', ref: 'fcn_resnet', filterBound: true },
  { file: 'unet_convt.onnx', ref: 'unet_convt', filterBound: true },
  { file: 'unet_up.onnx', ref: 'unet_up', filterBound: true },
  { file: 'unet_up-dynamic.onnx', ref: 'unet_up-dynamic', shape: [1, 3, 64, 64], filterBound: true },
  // The FPN's four maps are its graph outputs, so their 3x3 convs keep their filters by design.
  { file: 'fpn_resnet.onnx', ref: 'fpn_resnet', filterBound: false },
];
const BUDGETS = [0.3, 0.5, 0.7];
const TOLERANCE = 0.005;

const dense = (f: string): string => fixture(`dense/${f}`);
const refOf = (c: DenseCase): DenseRef =>
  JSON.parse(fs.readFileSync(dense(`${c.ref}.ref.json`), 'utf8')) as DenseRef;
const shapesOf = (c: DenseCase, model: Model): Record<string, number[]> | undefined =>
  c.shape && { [model.graph.inputs.find((v) => !v.isInitializer)!.name]: c.shape };

function refArrays(c: DenseCase): {
  arrays: DenseRef['bin']['arrays'];
  read: (k: string, from?: DenseRef['bin']['arrays']) => Float32Array;
} {
  const r = refOf(c);
  const bin = fs.readFileSync(dense(`${c.ref}.ref.bin`));
  const read = (k: string, from = r.bin.arrays): Float32Array => {
    const a = from[k]!;
    return new Float32Array(
      bin.buffer.slice(bin.byteOffset + a.byteOffset, bin.byteOffset + a.byteOffset + a.numel * 4),
    );
  };
  return { arrays: r.bin.arrays, read };
}

/** The model as prune analyses it: loaded, then the standard cleanup. */
function loadClean(file: string): Model {
  const model = load(file);
  cleanupPipeline(new PassManager(), model);
  return model;
}

/** Every output of one run (default optimisation level, as deployments run it), with its dims. */
async function run(
  model: Model,
  feeds: Record<string, ort.Tensor>,
): Promise<{ data: Float32Array[]; dims: number[][] }> {
  const session = await ort.InferenceSession.create(serializeModel(model));
  try {
    const out = await session.run(feeds);
    const list = model.graph.outputs.map((v) => out[v.name]!);
    return { data: list.map((t) => t.data as Float32Array), dims: list.map((t) => t.dims.map(Number)) };
  } finally {
    await session.release();
  }
}

const seeded = (model: Model, shape: number[], seed = 7): Record<string, ort.Tensor> =>
  randomInputs(model, new Map([[model.graph.inputs.find((v) => !v.isInitializer)!.name, shape]]), seed);

const scale = (arrays: Float32Array[]): number =>
  Math.max(1, ...arrays.map((a) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0)));

function keepMasks(plan: Plan): Uint8Array[] {
  return plan.groups.map((g) => {
    const m = new Uint8Array(g.channels);
    for (const c of g.keep) m[c] = 1;
    return m;
  });
}

describe('dense: the fixtures match PyTorch and inspect counts what onnxruntime runs', () => {
  for (const c of CASES) {
    it(`${c.file}: onnxruntime equals torch; inspect's MACs equal the hook count and onnxruntime's shapes`, async () => {
      const r = refOf(c);
      const { arrays, read } = refArrays(c);
      const model = load(dense(c.file));
      const input = new ort.Tensor('float32', read('input'), arrays.input!.shape);
      const out = await run(model, { [r.inputName]: input });
      const want = r.outputNames.map((k) => read(k));
      assert.ok(maxAbsDiff(out.data, want) <= 1e-4 * scale(want), `${maxAbsDiff(out.data, want)}`);
      for (const extra of r.bin.extraInputs ?? []) {
        const x = new ort.Tensor('float32', read('input', extra.arrays), extra.inputShape);
        const more = await run(model, { [r.inputName]: x });
        const expected = r.outputNames.map((k) => read(k, extra.arrays));
        assert.ok(maxAbsDiff(more.data, expected) <= 1e-4 * scale(expected), `at ${extra.inputShape}`);
      }

      const shape = c.shape ?? arrays.input!.shape.map((d, i) => (i === 0 ? 1 : d));
      const inspected = await countCostProbed(model, { inputShape: shape });
      assert.equal(inspected.totalMacs, r.macs);
      // Independent of the static shape analysis: every value's dims as onnxruntime produces them.
      const byOrt = await probeModel(model, new Map([[r.inputName, shape]]));
      const counted = measureCost(model, { [r.inputName]: shape }, (v) => byOrt.dims.get(v));
      assert.equal(counted.totalMacs, inspected.totalMacs);
    });
  }
});

describe('dense: at most 3% of the MACs in layers whose filters cannot shrink', () => {
  for (const c of CASES.filter((k) => k.filterBound)) {
    it(c.file, async () => {
      const model = loadClean(dense(c.file));
      const analysis = await analyzeModel(model, shapesOf(c, model));
      assert.deepEqual(analysis.costMismatches, []);
      const total = (await countCostProbed(model, { inputShape: c.shape })).totalMacs;
      const frozen = frozenBreakdown(analysis, total);
      assert.ok(
        frozen.byFilters <= 0.03,
        `${(100 * frozen.byFilters).toFixed(1)}%: ${JSON.stringify(frozen.reasons.slice(0, 3))}`,
      );
    });
  }
});

describe('dense: prune at 0.3 / 0.5 / 0.7', () => {
  const dir = tmpDir();
  const written: string[] = [];
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const c of CASES) {
    it(`${c.file}: within 0.5% under each budget (inspect's count); mask-equivalent; outputs and input declaration kept`, async (t) => {
      const original = loadClean(dense(c.file));
      const inputShapes = shapesOf(c, original);
      const shape = c.shape ?? [
        1,
        ...(original.graph.inputs.find((v) => !v.isInitializer)!.shape!.slice(1) as number[]),
      ];
      const before = (await countCostProbed(original, { inputShape: shape })).totalMacs;
      const reference = await run(original, seeded(original, shape));
      for (const ratio of BUDGETS) {
        const result = await pruneModel(loadClean(dense(c.file)), { flops: ratio, inputShapes });
        const achieved = (await countCostProbed(result.model, { inputShape: shape })).totalMacs / before;
        t.diagnostic(`${ratio}: ${achieved.toFixed(4)}`);
        assert.ok(achieved <= ratio + 1e-9 && achieved >= ratio * (1 - TOLERANCE), `${ratio}: ${achieved}`);
        assert.equal(
          result.report.pruned.macs / result.report.original.macs,
          achieved,
          'the report says what inspect counts',
        );
        assert.deepEqual(
          result.model.graph.inputs[0]!.shape,
          original.graph.inputs[0]!.shape,
          'input declaration',
        );
        for (const v of result.model.graph.initializers)
          assert.ok(
            v.initializer!.dims.every((d) => d > 0) ||
              original.graph.initializers.some((o) => o.name === v.name && o.initializer!.dims.includes(0)),
            `${v.name} is empty`,
          );
        const out = path.join(dir, `${c.file.replace('.onnx', '')}-${ratio}.onnx`);
        saveModel(result.model, out);
        written.push(out);

        const masked = loadClean(dense(c.file));
        const analysis = await analyzeModel(masked, inputShapes);
        maskRemovedChannels(analysis, keepMasks(result.plan));
        maskRemovedInputs(analysis, keepMasks(result.plan));
        const pruned = await run(load(out), seeded(original, shape));
        const want = await run(masked, seeded(original, shape));
        assert.deepEqual(pruned.dims, reference.dims, 'output shapes');
        const diff = maxAbsDiff(pruned.data, want.data);
        assert.ok(
          diff <= 1e-4 * scale(want.data),
          `${ratio}: pruned differs from the masked original by ${diff}`,
        );
        // A dynamic export still runs at the other sizes it was exported for.
        for (const extra of refOf(c).bin.extraInputs ?? []) {
          const other = await run(load(out), seeded(original, extra.inputShape));
          assert.deepEqual(
            other.dims,
            refOf(c).outputNames.map((k) => extra.arrays[k]!.shape),
            `at ${extra.inputShape}`,
          );
        }
      }
    });
  }

  it('every pruned model passes the ONNX checker (full_check)', onnxChecker(), () => {
    assert.ok(written.length >= CASES.length * BUDGETS.length, 'the prune tests above wrote their models');
    const script =
      'import sys, onnx\nfor p in sys.argv[1:]:\n    onnx.checker.check_model(onnx.load(p), full_check=True)\n';
    execFileSync('/usr/bin/python3', ['-c', script, ...written], { stdio: ['ignore', 'ignore', 'pipe'] });
  });
});

describe('dense: dynamic H/W and the frozen floor through the CLI', () => {
  const dir = tmpDir();
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a dynamic export needs --input-shape; with it the budget is counted there and the input stays dynamic', async () => {
    const file = dense('yolo_det-dynamic.onnx');
    const out = path.join(dir, 'slim.onnx');
    const refused = await runCli(['prune', file, '--flops', '0.5', '-o', out]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /--input-shape/);
    assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
    const r = await runCli([
      'prune',
      file,
      '--flops',
      '0.5',
      '--input-shape',
      '1x3x64x64',
      '--round-to',
      '1',
      '-o',
      out,
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as { inputShapes?: Record<string, number[]> };
    const report = JSON.parse(fs.readFileSync(`${out}.report.json`, 'utf8')) as object;
    assert.match(JSON.stringify([summary, report]), /"images":\[1,3,64,64\]/);
    assert.deepEqual(load(out).graph.inputs[0]!.shape, ['batch', 3, 'height', 'width']);
    const at = await runCli(['inspect', out, '--input-shape', '1x3x96x64', '--json']);
    assert.equal(at.code, 0, at.stderr);
    const wrong = await runCli([
      'prune',
      dense('yolo_det-opset17.onnx'),
      '--flops',
      '0.5',
      '--input-shape',
      '1x3x32x64',
      '-o',
      out,
    ]);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /contradicts input 'images'/);
  });

  it('a budget under the frozen floor (an attention-style MatMul of two activations) ends with exit 2 and one line', async () => {
    const file = path.join(dir, 'gram.onnx');
    saveModel(gramModel(), file);
    const r = await runCli(['prune', file, '--flops', '0.1', '-o', path.join(dir, 'gram-slim.onnx')]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(
      r.stderr,
      /at most \d+\.\d% of the MACs can shrink, so the floor is \d+\.\d%; frozen: .*MatMul.*×1/,
    );
    // Above the floor the budget is met on the whole model, the MatMul's MACs included.
    const model = gramModel();
    const total = (await countCostProbed(model)).totalMacs;
    const result = await pruneModel(model, { flops: 0.5 });
    const achieved = (await countCostProbed(result.model)).totalMacs / total;
    assert.ok(achieved <= 0.5 && achieved > 0.49, `${achieved}`);
    assert.equal(result.report.original.macs, total);
    assert.equal(result.report.pruned.macs / result.report.original.macs, achieved);
  });
});

/** Conv 3->128, Conv 128->8, then the 256x256 Gram matrix of the pixels (a MatMul of two activations). */
describe('MatMul of two activations contracted over the channels (a Gram matrix rᵀ · r)', () => {
  it('prunes with the channels and equals the masked original', async () => {
    const { model: pruned, plan } = await pruneModel(gramModel(true), { flops: 0.5, roundTo: 1 });
    const conv2 = plan.groups.find((g) => g.channels === 256)!;
    assert.ok(conv2.keep.length < 256, 'the contracted channels are pruned');
    const masked = gramModel(true);
    const analysis = await analyzeModel(masked);
    maskRemovedChannels(analysis, keepMasks(plan));
    maskRemovedInputs(analysis, keepMasks(plan));
    const feeds = {
      x: new ort.Tensor(
        'float32',
        Float32Array.from({ length: 2 * 768 }, (_, i) => Math.cos(i)),
        [2, 3, 16, 16],
      ),
    };
    const outputs = await Promise.all(
      [masked, pruned].map(async (m) => {
        const session = await ort.InferenceSession.create(serializeModel(m));
        const out = (await session.run(feeds)).gram!.data as Float32Array;
        await session.release();
        return out;
      }),
    );
    const diff = maxAbsDiff([outputs[0]!], [outputs[1]!]);
    const scale = outputs[0]!.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(diff <= 1e-5 * scale, `${diff} of ${scale}`);
  });
});

function gramModel(contracted = false): Model {
  const g = new Graph();
  const weight = (name: string, dims: number[]): Value => {
    const v = new Value(name);
    const n = dims.reduce((a, b) => a * b, 1);
    g.addInitializer(
      v,
      Tensor.fromArray(
        DataType.FLOAT,
        dims,
        Float32Array.from({ length: n }, (_, i) => Math.sin(i + 1)),
      ),
    );
    return v;
  };
  const x = new Value('x', tensorType(DataType.FLOAT, ['N', 3, 16, 16]));
  g.inputs.push(x);
  const [a, b, r, rt, out] = ['a', 'b', 'r', 'rt', 'gram'].map((n) => new Value(n)) as [
    Value,
    Value,
    Value,
    Value,
    Value,
  ];
  for (const [name, input, w, o] of [
    ['conv1', x, weight('conv1.weight', [128, 3, 3, 3]), a],
    ['conv2', a, weight('conv2.weight', [256, 128, 3, 3]), b],
  ] as const) {
    const conv = g.addNode(new Node('Conv', [input, w], [o], name));
    conv.attributes.set('pads', intsAttr([1, 1, 1, 1]));
  }
  const shape = new Value('flat_shape');
  g.addInitializer(shape, Tensor.int64([0, 256, 256]));
  g.addNode(new Node('Reshape', [b, shape], [r], 'flatten'));
  const transpose = g.addNode(new Node('Transpose', [r], [rt], 'transpose'));
  transpose.attributes.set('perm', intsAttr([0, 2, 1]));
  // r · rᵀ: the channels are both the rows and the columns of the product, which no rule follows; rᵀ · r sums
  // over them, so removing a channel removes its term from every sum (what masking it does).
  g.addNode(new Node('MatMul', contracted ? [rt, r] : [r, rt], [out], 'gram'));
  g.outputs.push(out);
  const model = new Model(g);
  model.opsetImports = [{ domain: '', version: 13 }];
  return model;
}

function onnxChecker(): { skip: string | false } {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import onnx.checker'], { stdio: 'ignore' });
    return { skip: false };
  } catch {
    return { skip: '/usr/bin/python3 with the onnx package is absent: the ONNX checker is not run' };
  }
}
