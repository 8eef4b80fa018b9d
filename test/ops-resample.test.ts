/**
 * The resampling handlers (src/ops/resize.ts, src/ops/depth-to-space.ts) on graphs that the dense fixtures do
 * not contain: a Resize whose constant `sizes` names the channel count (it must be rewritten), an opset-9
 * Upsample, DepthToSpace in both orders and SpaceToDepth. Each is pruned by a random criterion; the pruned
 * model must equal the original with the removed channels zeroed, and a keep-all plan must be bit-identical.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DataType,
  Graph,
  Model,
  Node,
  Tensor,
  Value,
  intAttr,
  intsAttr,
  stringAttr,
  tensorType,
} from '../src/ir/index.js';
import { analyzeModel, pruneModel } from '../src/prune/index.js';
import { maskRemovedChannels, maxAbsDiff, runModel } from './prune-helpers.js';

type Middle = (g: Graph, x: Value, y: Value, consts: (name: string, t: Tensor) => Value) => void;

/** conv_a (3 -> 16 channels) -> BN -> the op under test -> conv_b (-> 4 channels). */
function model(middle: Middle, midChannels: number, opset = 13): Model {
  const g = new Graph();
  const consts = (name: string, t: Tensor): Value => {
    const v = new Value(name);
    g.addInitializer(v, t);
    return v;
  };
  const weight = (name: string, dims: number[], seed: number): Value =>
    consts(
      name,
      Tensor.fromArray(
        DataType.FLOAT,
        dims,
        Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) =>
          Math.sin(seed * 7 + i * 1.3),
        ),
      ),
    );
  const x = new Value('x', tensorType(DataType.FLOAT, ['N', 3, 8, 8]));
  g.inputs.push(x);
  const [a, b, m, out] = ['a', 'b', 'm', 'out'].map((n) => new Value(n)) as [Value, Value, Value, Value];
  const convA = g.addNode(new Node('Conv', [x, weight('a.weight', [16, 3, 3, 3], 1)], [a], 'conv_a'));
  convA.attributes.set('pads', intsAttr([1, 1, 1, 1]));
  const bn = ['gamma', 'beta', 'mean', 'var'].map((k, i) =>
    consts(
      `bn.${k}`,
      Tensor.fromArray(
        DataType.FLOAT,
        [16],
        Float32Array.from({ length: 16 }, (_, c) => (k === 'var' ? 1 + c / 16 : Math.cos(c * (i + 2)))),
      ),
    ),
  );
  g.addNode(new Node('BatchNormalization', [a, ...bn], [b], 'bn'));
  middle(g, b, m, consts);
  g.addNode(new Node('Conv', [m, weight('b.weight', [4, midChannels, 1, 1], 2)], [out], 'conv_b'));
  g.outputs.push(out);
  const result = new Model(g);
  result.opsetImports = [{ domain: '', version: opset }];
  return result;
}

const CASES: { name: string; build: () => Model }[] = [
  {
    name: 'Resize with constant sizes [1, 16, 16, 16] (nearest)',
    build: () =>
      model((g, x, y, consts) => {
        const roi = consts('roi', Tensor.fromArray(DataType.FLOAT, [0], new Float32Array(0)));
        const scales = consts('scales', Tensor.fromArray(DataType.FLOAT, [0], new Float32Array(0)));
        const sizes = consts('sizes', Tensor.int64([1, 16, 16, 16]));
        const n = g.addNode(new Node('Resize', [x, roi, scales, sizes], [y], 'resize'));
        n.attributes.set('mode', stringAttr('nearest'));
      }, 16),
  },
  {
    name: 'Upsample (opset 9, nearest, scales input)',
    build: () =>
      model(
        (g, x, y, consts) => {
          const scales = consts(
            'scales',
            Tensor.fromArray(DataType.FLOAT, [4], new Float32Array([1, 1, 2, 2])),
          );
          g.addNode(new Node('Upsample', [x, scales], [y], 'upsample'));
        },
        16,
        9,
      ),
  },
  ...(['DCR', 'CRD'] as const).map((mode) => ({
    name: `DepthToSpace (${mode}, block 2)`,
    build: () =>
      model((g, x, y) => {
        const n = g.addNode(new Node('DepthToSpace', [x], [y], 'd2s'));
        n.attributes.set('blocksize', intAttr(2));
        n.attributes.set('mode', stringAttr(mode));
      }, 4),
  })),
  {
    name: 'SpaceToDepth (block 2)',
    build: () =>
      model((g, x, y) => {
        const n = g.addNode(new Node('SpaceToDepth', [x], [y], 's2d'));
        n.attributes.set('blocksize', intAttr(2));
      }, 64),
  },
];

describe('resampling ops: Resize, Upsample, DepthToSpace, SpaceToDepth', () => {
  for (const c of CASES) {
    it(`${c.name}: keep-all is bit-identical; pruned equals the masked original`, async () => {
      const before = await runModel(c.build());
      const all = await pruneModel(c.build(), { flops: 1 });
      assert.equal(maxAbsDiff(before, await runModel(all.model)), 0);

      const { model: pruned, plan } = await pruneModel(c.build(), {
        flops: 0.5,
        criterion: 'random',
        seed: 5,
      });
      const group = plan.groups.find((g) => g.channels === 16 || g.channels === 4);
      assert.ok(group && group.keep.length < group.channels, 'the plan removes channels of conv_a');
      const masked = c.build();
      const analysis = await analyzeModel(masked);
      assert.deepEqual(analysis.costMismatches, []);
      maskRemovedChannels(
        analysis,
        plan.groups.map((g) => {
          const m = new Uint8Array(g.channels);
          for (const k of g.keep) m[k] = 1;
          return m;
        }),
      );
      const diff = maxAbsDiff(await runModel(masked), await runModel(pruned));
      assert.ok(diff <= 1e-5, `pruned differs from the masked original by ${diff}`);
    });
  }
});
