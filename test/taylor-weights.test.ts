/**
 * Taylor scores without BN (issue 30, "Taylor through the autodiff"): for an output linear in its weights,
 * Σ a·∂L/∂a = Σ W·∂L/∂W + b·∂L/∂b, so the producers' weight gradients give the term of every channel. Checked
 * against a central finite difference of the loss when one channel's output is scaled (its filter and bias
 * scaled together) on a BN-folded CNN and on the trained ViT's heads, MLP and residual stream; a group with BN
 * keeps its BN terms bit for bit; prune with labels and `--criterion taylor` runs on the ViT.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { batches } from '../src/data/batches.js';
import { requireLabels } from '../src/data/dataset.js';
import { openDataset } from '../src/data/open.js';
import { resolveSpec } from '../src/data/preprocess.js';
import { loadModel, Node, Value, type Model } from '../src/ir/index.js';
import { cleanupPipeline } from '../src/passes/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import { classPriority, ClassFilters, forEachFilterIndex } from '../src/prune/criteria.js';
import type { GroupAnalysis } from '../src/prune/groups.js';
import { analyzeForPruning } from '../src/prune/index.js';
import {
  linearSources,
  TaylorProbe,
  taylorPriority,
  taylorScores,
  type LinearSource,
} from '../src/prune/taylor.js';
import type { PruneReport } from '../src/report/types.js';
import { probeInputDims, randomInputs } from '../src/shapes/probe.js';
import { fixture, runCli, tmpDir } from './helpers.js';

const BATCH = 8;

async function cleaned(
  name: string,
): Promise<{ model: Model; sources: LinearSource[]; channels: GroupAnalysis }> {
  const model = loadModel(fixture(name));
  cleanupPipeline(new PassManager(), model);
  const { channels } = await analyzeForPruning(model);
  return { model, sources: linearSources(channels), channels };
}

function batchOf(model: Model): { images: Float32Array; labels: Int32Array } {
  const [input, dims] = [...probeInputDims(model)][0]!;
  const images = randomInputs(model, new Map([[input, [BATCH, ...dims.slice(1)]]]), 5)[input]!
    .data as Float32Array;
  return { images, labels: Int32Array.from({ length: BATCH }, (_, i) => (i * 3) % 10) };
}

/** Parameter values with output position `p` of `source` (its filter and its bias) multiplied by `f`. */
function scaled(model: Model, source: LinearSource, p: number, f: number): Map<string, Float32Array> {
  const init = new Map(model.graph.initializers.map((v) => [v.name, v.initializer!]));
  const w = Float32Array.from(init.get(source.weight)!.data as Float32Array);
  forEachFilterIndex(source.layout, p, (at) => {
    w[at]! *= f;
  });
  const out = new Map([[source.weight, w]]);
  if (source.bias) {
    const b = Float32Array.from(init.get(source.bias)!.data as Float32Array);
    b[p]! *= f;
    out.set(source.bias, b);
  }
  return out;
}

/**
 * Σ a·∂L/∂a of an output channel is the derivative of the loss when that channel is scaled by (1 + ε); a
 * central difference must agree within 5% (float32 losses, and the ReLU kinks a finite step crosses).
 */
async function checkFiniteDifferences(
  model: Model,
  sources: LinearSource[],
  picks: [source: LinearSource, positions: number[]][],
): Promise<void> {
  const { images, labels } = batchOf(model);
  const probe = await TaylorProbe.create(model, BATCH, undefined, sources);
  try {
    const { linear } = await probe.terms(images, labels);
    for (const [source, positions] of picks) {
      const t = linear[sources.indexOf(source)]!;
      for (const p of positions) {
        const eps = 0.005;
        const up = (await probe.terms(images, labels, scaled(model, source, p, 1 + eps))).loss;
        const down = (await probe.terms(images, labels, scaled(model, source, p, 1 - eps))).loss;
        const fd = (up - down) / (2 * eps);
        assert.ok(
          Math.abs(fd - t[p]!) <= 0.05 * Math.abs(t[p]!) + 5e-4,
          `${source.node} position ${p}: Taylor ${t[p]} vs finite difference ${fd}`,
        );
      }
    }
  } finally {
    await probe.release();
  }
}

describe('Taylor terms from the producers’ weights', () => {
  it('a BN-folded CNN: every conv’s terms equal a finite difference of the loss', async () => {
    const { model, sources } = await cleaned('fmnist_cnn-bnfolded.onnx');
    // The three convs (the classifier's group is a graph output, frozen), each with its bias.
    assert.deepEqual(
      sources.map((s) => [s.node, s.bias !== undefined]),
      [
        ['/conv1/Conv', true],
        ['/conv2/Conv', true],
        ['/conv3/Conv', true],
      ],
    );
    await checkFiniteDifferences(model, sources, [
      [sources[0]!, [0, 7]],
      [sources[1]!, [3, 20]],
      [sources[2]!, [40]],
    ]);
  });

  it('the trained ViT: q, k and v channels of a head, the MLP and the residual stream', async () => {
    const { model, sources } = await cleaned('trained/vit.onnx');
    const named = (suffix: string) => sources.find((s) => s.node.endsWith(suffix))!;
    const inProj = named('encoder_layer_1/self_attention/MatMul');
    // One head class owns its 16 rows in each of q, k and v of the fused in-projection (the head grouping
    // the l1/l2 head scores read), and the bias Add after the MatMul is the layer's bias.
    assert.equal(inProj.classOf.length, 192);
    for (const p of [0, 17, 64 + 33, 128 + 63]) assert.equal(inProj.classOf[p], Math.floor((p % 64) / 16));
    assert.ok(inProj.bias);
    const mlp = named('encoder_layer_0/mlp/mlp.0/MatMul');
    const down = named('encoder_layer_2/mlp/mlp.3/MatMul');
    const outProj = named('encoder_layer_0/self_attention/Gemm');
    assert.ok(mlp.bias && down.bias && outProj.bias);
    await checkFiniteDifferences(model, sources, [
      [inProj, [5, 64 + 21, 128 + 50]],
      [mlp, [9]],
      [down, [30]],
      [outProj, [2]],
      [named('conv_proj/Conv'), [11]],
    ]);
  });

  it('a group with BN keeps its BN scores bit for bit; the BN-free group gets weight terms', async () => {
    const { model, sources, channels } = await cleaned('vgg.onnx');
    // vgg's hidden classifier layer has no BN: the only linear source. Every BN group is left to its BNs.
    assert.deepEqual(
      sources.map((s) => s.node),
      ['/classifier/classifier.0/Gemm'],
    );
    const dataset = requireLabels(await openDataset(fixture('example/fashion-mnist'), { split: 'test' }));
    const { spec } = resolveSpec({ preset: 'cifar10', resize: 32 });
    const indices = Int32Array.from({ length: 32 }, (_, i) => i * 7);
    const scores = await taylorScores(model, channels, dataset, { spec, indices, batchSize: 16 });
    // What the scores were before: BN terms alone, from a probe of the BN layers only.
    const want = channels.groups.map((g) => (g.norms.length ? new Float64Array(g.size) : undefined));
    const probe = await TaylorProbe.create(model, 16);
    try {
      for await (const batch of batches(dataset, { spec, batchSize: 16, indices })) {
        const { terms } = await probe.terms(batch.images, batch.labels);
        channels.groups.forEach((g, i) => {
          for (const { node, space } of g.norms)
            terms.get(node.name)!.forEach((t, p) => (want[i]![space.classOf[p]!]! += Math.abs(t)));
        });
      }
    } finally {
      await probe.release();
    }
    const hidden = sources[0]!.group;
    channels.groups.forEach((g, i) => {
      // Measured now (it used l1 before); a channel ReLU leaves dead for these images scores 0.
      if (i === hidden) assert.ok(scores[i]!.length === 32 && scores[i]!.filter((x) => x > 0).length > 16);
      else assert.deepEqual(scores[i], want[i], `group ${i}`);
    });
    assert.ok(want.filter(Boolean).length >= 4);
  });
});

describe('groups without usable producers', () => {
  it('a shared weight gives no terms, and its group falls back to l1 with a warning', async () => {
    const { model, channels } = await cleaned('fmnist_cnn-bnfolded.onnx');
    // A second reader of conv2's weight: its gradient would sum over both uses, so it is not a Taylor term.
    const conv2 = model.graph.nodes.find((n) => n.name === '/conv2/Conv')!;
    model.graph.addNode(new Node('Identity', [conv2.inputs[1]], [new Value('copy')]));
    const sources = linearSources(channels);
    assert.deepEqual(
      sources.map((s) => s.node),
      ['/conv1/Conv', '/conv3/Conv'],
    );
    const group = channels.groups.find((g) => g.producers.some((p) => p.node === conv2))!;
    const warnings: string[] = [];
    const filters = new ClassFilters(group);
    assert.deepEqual(
      taylorPriority(group, undefined, 0, (w) => warnings.push(w), filters),
      classPriority(group, 'l1', 0, () => {}, filters),
    );
    assert.match(warnings.join('\n'), /^taylor: some groups have no measured Taylor scores.*they use l1$/);
  });
  it('an op without a backward rule before the loss: the groups fall back to l1, the run goes on', async () => {
    const { model, channels } = await cleaned('fmnist_cnn-bnfolded.onnx');
    // Floor has no gradient: put it between the last conv and the classifier, after the analysis.
    const pool = model.graph.nodes.find((n) => n.opType === 'GlobalAveragePool')!;
    const floored = new Value('floored');
    model.graph.addNode(new Node('Floor', [pool.inputs[0]], [floored]), pool);
    pool.setInput(0, floored);
    const dataset = requireLabels(await openDataset(fixture('example/fashion-mnist'), { split: 'test' }));
    const warnings: string[] = [];
    const scores = await taylorScores(model, channels, dataset, {
      spec: resolveSpec({ preset: 'fmnist' }).spec,
      indices: Int32Array.from({ length: 16 }, (_, i) => i),
      batchSize: 16,
      warn: (w) => warnings.push(w),
    });
    assert.ok(scores.every((s) => s === undefined));
    assert.match(warnings.join('\n'), /^taylor: no weight-gradient terms .*Floor.*; they use l1$/);
  });
});

describe('prune with labels and --criterion taylor on the trained ViT', () => {
  const dir = tmpDir();
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs end to end, with every group scored', async () => {
    const out = path.join(dir, 't.onnx');
    const r = await runCli([
      'prune',
      fixture('trained/vit.onnx'),
      '--flops',
      '0.5',
      '--criterion',
      'taylor',
      '--data',
      fixture('example/fashion-mnist'),
      '--calibration-images',
      '200',
      '--finetune-epochs',
      '0',
      '--widths',
      'uniform',
      '--round-to',
      '1',
      '--json',
      '-o',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /no measured Taylor scores/);
    const report = (JSON.parse(r.stdout) as { pipeline: PruneReport }).pipeline;
    assert.deepEqual(
      report.criteria.map((c) => c.criterion),
      ['taylor'],
    );
    assert.ok(fs.existsSync(out));
  });
});
