/**
 * The torchvision families (fixtures/families, made by fixtures/make_families.py from the real torchvision
 * classes at small size): inspect's MACs equal PyTorch's, every budget prunes to a model that onnxruntime runs
 * at the default optimisation level and the ONNX checker accepts, and the pruned model equals the original with
 * the removed channels masked.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { NO_BATCHNORM_WARNING } from '../src/analysis/bn-report.js';
import { countCost } from '../src/analysis/cost.js';
import { UserError } from '../src/errors.js';
import { saveModel, serializeModel, type Model } from '../src/ir/index.js';
import { cleanupPipeline } from '../src/passes/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import {
  analyzeModel,
  pruneModel,
  type GroupAnalysis,
  type GroupRow,
  type Plan,
} from '../src/prune/index.js';
import { BN_FOLDED_WARNING } from '../src/prune/importance.js';
import { fixture, runCli, tmpDir } from './helpers.js';
import { load, maskRemovedChannels, maskRemovedInputs, maxAbsDiff, runModel } from './prune-helpers.js';

const FAMILIES = [
  'densenet_tv',
  'googlenet_tv',
  'squeezenet_tv',
  'resnext_tv',
  'regnetx_tv',
  'shufflenetv2_tv',
  'convnext_tv',
] as const;
const BUDGETS = [0.3, 0.5, 0.7];
const TOLERANCE = 0.005;

interface FamilyRef {
  macs: number;
  hasBatchNorm: boolean;
  bin: { arrays: Record<'input' | 'logits', { byteOffset: number; numel: number; shape: number[] }> };
}

const ref = (family: string): FamilyRef =>
  JSON.parse(fs.readFileSync(fixture(`families/${family}.ref.json`), 'utf8')) as FamilyRef;

/** Every family's files: BN kept, the default (BN-folding) export where it differs, ConvNeXt at opset 17 (LayerNormalization). */
const FILES = FAMILIES.flatMap((family) =>
  [`${family}.onnx`, `${family}-bnfolded.onnx`, `${family}-opset17.onnx`]
    .filter((f) => fs.existsSync(fixture(`families/${f}`)))
    .map((f) => ({ family, name: f, file: fixture(`families/${f}`) })),
);

/** Debian's python with the onnx package, for the full checker; absent on a user's machine. */
const PYTHON = '/usr/bin/python3';
const onnxChecker = ((): { skip: string | false } => {
  try {
    execFileSync(PYTHON, ['-c', 'import onnx.checker'], { stdio: 'ignore' });
    return { skip: false };
  } catch {
    return { skip: `${PYTHON} with the onnx package is absent: the ONNX checker is not run` };
  }
})();

async function runDefaultOptimisation(
  model: Model,
  input: Float32Array,
  dims: number[],
): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(serializeModel(model));
  try {
    const out = await session.run({ input: new ort.Tensor('float32', input, dims) });
    return out.logits!.data as Float32Array;
  } finally {
    await session.release();
  }
}

/** The model as the prune command analyses it: loaded, then the standard cleanup. */
function loadClean(file: string): Model {
  const model = load(file);
  cleanupPipeline(new PassManager(), model);
  return model;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Groups a LayerNorm normalises: LayerNormalization's input, or a ReduceMean over the space's channel axis. */
function layerNormGroups(analysis: GroupAnalysis): Set<number> {
  const groups = new Set<number>();
  for (const s of analysis.spaces)
    for (const { node } of s.value.uses)
      if (node.opType === 'LayerNormalization') groups.add(s.group);
      else if (node.opType === 'ReduceMean') {
        const rank = analysis.probe.dims.get(s.value)!.length;
        const axes = (node.attrInts('axes') ?? []).map((a) => (a < 0 ? a + rank : a));
        if (axes.includes(s.axis)) groups.add(s.group);
      }
  return groups;
}

function keepMasks(plan: Plan): Uint8Array[] {
  return plan.groups.map((g) => {
    const m = new Uint8Array(g.channels);
    for (const c of g.keep) m[c] = 1;
    return m;
  });
}

describe('families: the fixtures match PyTorch', () => {
  for (const { family, name, file } of FILES) {
    it(`${name}: inspect's MACs equal the hook count; onnxruntime (default level) equals the torch logits`, async () => {
      const r = ref(family);
      const cli = await runCli(['inspect', file, '--json']);
      assert.equal(cli.code, 0, cli.stderr);
      assert.equal(JSON.parse(cli.stdout).macs, r.macs);
      const bin = fs.readFileSync(fixture(`families/${family}.ref.bin`));
      const array = (k: 'input' | 'logits'): Float32Array => {
        const a = r.bin.arrays[k];
        return new Float32Array(
          bin.buffer.slice(bin.byteOffset + a.byteOffset, bin.byteOffset + a.byteOffset + a.numel * 4),
        );
      };
      const logits = await runDefaultOptimisation(load(file), array('input'), r.bin.arrays.input.shape);
      assert.ok(maxAbsDiff([logits], [array('logits')]) < 1e-4);
    });
  }
});

describe('families: inspect --groups and prune see the same groups; at most 15% of MACs frozen', () => {
  for (const { name, file } of FILES) {
    it(name, async () => {
      const inspected = await runCli(['inspect', file, '--groups', '--json']);
      assert.equal(inspected.code, 0, inspected.stderr);
      const report = JSON.parse(inspected.stdout) as { groups: GroupRow[]; frozenMacShare: number };
      const pruned = await runCli(['prune', file, '--flops', '0.7', '--dry-run', '--json']);
      const plan = JSON.parse(pruned.stdout) as { groups: { frozen?: string }[] };
      assert.equal(report.groups.length, plan.groups.length);
      assert.deepEqual(
        report.groups.map((g) => g.frozen !== undefined),
        plan.groups.map((g) => g.frozen !== undefined),
      );
      // Every family prunes: at most 15% of the MACs sit in layers whose output channels are frozen.
      assert.ok(report.frozenMacShare >= 0 && report.frozenMacShare <= 0.15, `${report.frozenMacShare}`);
    });
  }
});

describe('families: BN messages', () => {
  it('a model built without BN is not called BN-folded (inspect and prune)', async () => {
    for (const file of ['squeezenet_tv.onnx', 'convnext_tv.onnx', 'convnext_tv-bnfolded.onnx']) {
      const r = await runCli(['inspect', fixture(`families/${file}`)]);
      assert.match(r.stdout, /no BatchNormalization in this model/);
      assert.doesNotMatch(r.stdout, /folded into|TrainingMode/);
      const warned: string[] = [];
      await pruneModel(load(fixture(`families/${file}`)), {
        flops: 1,
        warn: (m) => warned.push(m),
        validate: false,
      });
      assert.ok(warned.includes(NO_BATCHNORM_WARNING), warned.join('\n'));
      assert.ok(!warned.includes(BN_FOLDED_WARNING));
    }
  });

  it('a BN-folded export of a BN architecture is called folded, with the export call', async () => {
    const r = await runCli(['inspect', fixture('families/regnetx_tv-bnfolded.onnx'), '--json']);
    const bn = JSON.parse(r.stdout).batchNorm;
    assert.equal(bn.bnFolded, true);
    assert.match(bn.notice, /BN was folded into the convolutions.*TrainingMode\.PRESERVE/);
    const warned: string[] = [];
    await pruneModel(load(fixture('families/regnetx_tv-bnfolded.onnx')), {
      flops: 0.7,
      warn: (m) => warned.push(m),
      validate: false,
    });
    assert.ok(warned.includes(BN_FOLDED_WARNING));
  });
});

describe('families: prune at 0.3 / 0.5 / 0.7', () => {
  const dir = tmpDir();
  const written: string[] = [];
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const { family, name, file } of FILES) {
    it(`${name}: within 0.5% under each budget (inspect's count) or a clean "not achievable"; mask-equivalent`, async (t) => {
      const original = ref(family).macs;
      for (const ratio of BUDGETS) {
        const warned: string[] = [];
        let result: Awaited<ReturnType<typeof pruneModel>>;
        try {
          result = await pruneModel(loadClean(file), { flops: ratio, warn: (m) => warned.push(m) });
        } catch (e) {
          // The width limits or frozen groups may put the budget out of reach: a one-line user error.
          assert.ok(e instanceof UserError, String(e));
          assert.match(e.message, /not achievable/);
          assert.doesNotMatch(e.message, /\n/);
          t.diagnostic(`${ratio}: ${e.message}`);
          continue;
        }
        const achieved = countCost(result.model).totalMacs / original;
        t.diagnostic(`${ratio}: ${achieved.toFixed(4)}`);
        assert.ok(achieved <= ratio + 1e-9, `${ratio}: inspect counts ${achieved}`);
        if (achieved < ratio * (1 - TOLERANCE))
          assert.ok(
            warned.some((w) => w.startsWith('closest achievable')),
            `${ratio}: ${achieved} with no note`,
          );
        const out = path.join(dir, `${name.replace('.onnx', '')}-${ratio}.onnx`);
        saveModel(result.model, out);
        written.push(out);

        // Mask equivalence: the original with the removed channels zeroed computes the same. A LayerNorm over
        // channels normalises over the kept channels after pruning, which no masking of the original reproduces
        // (removed channels would still count in its mean and variance), so those groups are kept whole here.
        const masked = loadClean(file);
        const analysis = await analyzeModel(masked);
        const normalised = layerNormGroups(analysis);
        let plan = result.plan;
        let prunedFile = out;
        if (normalised.size) {
          plan = {
            ...plan,
            groups: plan.groups.map((g) => (normalised.has(g.id) ? { ...g, keep: range(g.channels) } : g)),
          };
          prunedFile = path.join(dir, 'without-layernorm-groups.onnx');
          saveModel((await pruneModel(loadClean(file), { plan })).model, prunedFile);
          t.diagnostic(`${ratio}: mask equivalence with the ${normalised.size} LayerNorm groups kept whole`);
        }
        maskRemovedChannels(analysis, keepMasks(plan));
        maskRemovedInputs(analysis, keepMasks(plan));
        const diff = maxAbsDiff(await runModel(masked), await runModel(load(prunedFile)));
        assert.ok(diff <= 1e-4, `${ratio}: pruned differs from the masked original by ${diff}`);
      }
    });
  }

  it('every pruned model passes the ONNX checker (full_check)', onnxChecker, () => {
    assert.ok(written.length >= FILES.length, 'the prune tests above wrote their models');
    const script =
      'import sys, onnx\nfor p in sys.argv[1:]:\n    onnx.checker.check_model(onnx.load(p), full_check=True)\n';
    execFileSync(PYTHON, ['-c', script, ...written], { stdio: ['ignore', 'ignore', 'pipe'] });
  });
});

before(() => assert.ok(FILES.length >= FAMILIES.length));
