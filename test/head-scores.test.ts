/**
 * Head scores (issue 30, "Criteria that make sense for heads"): a head's l1/l2 is the norm of all its weights,
 * its D rows of q, k and v and its D columns of the out projection, computed here by hand from the fixture's
 * initializers and compared with what the criteria rank by.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { constantOf, loadModel, type Node } from '../src/ir/index.js';
import { cleanupPipeline } from '../src/passes/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import { classPriority } from '../src/prune/criteria.js';
import { analyzeForPruning } from '../src/prune/index.js';
import { fixture } from './helpers.js';

/** Per head: Σ|w| and Σw² over its q/k/v columns of the fused in-projection [C, 3C] and its out-projection columns. */
function handScores(
  inProj: Node,
  outProj: Node,
  heads: number,
): { l1: number[]; sq: number[]; qkvL1: number[] } {
  const w = constantOf(inProj.inputs[1])!.toFloat64();
  const [c, three] = constantOf(inProj.inputs[1])!.dims as [number, number];
  const width = three / 3;
  const d = width / heads;
  const l1 = new Array<number>(heads).fill(0);
  const sq = new Array<number>(heads).fill(0);
  for (let row = 0; row < c; row++)
    for (let col = 0; col < three; col++) {
      const h = Math.floor((col % width) / d);
      const x = w[row * three + col]!;
      l1[h]! += Math.abs(x);
      sq[h]! += x * x;
    }
  const qkvL1 = [...l1];
  const o = constantOf(outProj.inputs[1])!;
  const transB = outProj.attrInt('transB', 0) === 1;
  const wo = o.toFloat64();
  const [r0, r1] = o.dims as [number, number];
  for (let i = 0; i < r0; i++)
    for (let j = 0; j < r1; j++) {
      const input = transB ? j : i; // the column read from the heads' channels
      const h = Math.floor(input / d);
      const x = wo[i * r1 + j]!;
      l1[h]! += Math.abs(x);
      sq[h]! += x * x;
    }
  return { l1, sq, qkvL1 };
}

describe('head scores', () => {
  it('vit.onnx: a head scores by its q, k, v rows and its out-projection columns', async () => {
    const model = loadModel(fixture('transformers/vit.onnx'));
    cleanupPipeline(new PassManager(), model);
    const { channels, filters } = await analyzeForPruning(model);
    const attention = model.graph.nodes.filter((n) => n.name.endsWith('self_attention/MatMul'));
    assert.equal(attention.length, 2);
    for (const inProj of attention) {
      const gi = channels.groups.findIndex((g) => g.producers.some((p) => p.node === inProj));
      const group = channels.groups[gi]!;
      assert.equal(group.size, 4, 'four heads');
      const outProj = model.graph.nodes.find((n) => n.name === inProj.name.replace(/MatMul$/, 'Gemm'))!;
      const want = handScores(inProj, outProj, group.size);
      const f = filters[gi]!;
      const close = (a: ArrayLike<number>, b: number[]) =>
        b.forEach((x, h) => assert.ok(Math.abs(a[h]! - x) <= 1e-6 * x, `head ${h}: ${a[h]} vs ${x}`));
      // The producers alone: the sum of the 3·D rows' norms (not the norm of their sum).
      close(f.norms().abs, want.qkvL1);
      close(f.normsWithReaders().abs, want.l1);
      close(f.normsWithReaders().sq, want.sq);
      const byL1 = [0, 1, 2, 3].sort((a, b) => want.l1[b]! - want.l1[a]! || a - b);
      assert.deepEqual(
        classPriority(group, 'l1', 0, () => {}, f),
        byL1,
      );
      // fpgm and exemplar read the concatenated vectors: 3·D in-projection rows and D out columns per head.
      assert.equal(f.vectors()[0]!.length, 64 * 48 + 64 * 16);
    }
    // A plain channel group (the MLP hidden width) has no readers: its scores are its producers' as before.
    const mlp = channels.groups.findIndex((g) =>
      g.producers.some((p) => p.node.name.endsWith('mlp.0/MatMul')),
    );
    assert.equal(filters[mlp]!.readers.length, 0);
  });
});
