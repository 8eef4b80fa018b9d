import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  normalisationTable,
  PRESETS,
  resolveSpec,
  specForInput,
  specPathFor,
} from '../src/data/preprocess.js';
import { mulberry32 } from '../src/data/prng.js';
import { balancedSubset, holdoutSplit, shuffledIndices } from '../src/data/subset.js';
import { tmpDir } from './helpers.js';

describe('preprocessing spec', () => {
  it('the normalisation table is the float32 recipe of models/README.md, value by value', () => {
    const table = normalisationTable(PRESETS.cifar10);
    for (let c = 0; c < 3; c++)
      for (let v = 0; v < 256; v++) {
        const mean = Math.fround(PRESETS.cifar10.mean[c]!);
        const std = Math.fround(PRESETS.cifar10.std[c]!);
        assert.equal(table[c * 256 + v], Math.fround(Math.fround(Math.fround(v / 255) - mean) / std));
      }
    // A few values checked by hand: (0/255 - 0.485) / 0.229 and (255/255 - 0.406) / 0.225.
    assert.ok(Math.abs(table[0]! - -2.117904) < 1e-6);
    assert.ok(Math.abs(table[2 * 256 + 255]! - 2.64) < 1e-6);
  });

  it('presets: cifar10 is the shared models recipe, fmnist is 1 channel 0.2860/0.3530, imagenet resizes and crops', () => {
    assert.deepEqual(resolveSpec({ preset: 'cifar10' }).spec.mean, [0.485, 0.456, 0.406]);
    const fmnist = resolveSpec({ preset: 'fmnist' });
    assert.deepEqual([fmnist.spec.channels, fmnist.spec.mean, fmnist.spec.std], [1, [0.286], [0.353]]);
    assert.equal(fmnist.source, 'preset fmnist');
    const imagenet = resolveSpec({ preset: 'imagenet' }).spec;
    assert.deepEqual([imagenet.resize, imagenet.crop], [256, 224]);
  });

  it('uses MODEL.preprocess.json beside the model; flags override single fields and the source says so', () => {
    const dir = tmpDir('adapruner-spec-');
    const model = path.join(dir, 'net.onnx');
    assert.equal(specPathFor(model), path.join(dir, 'net.preprocess.json'));
    fs.writeFileSync(
      specPathFor(model),
      JSON.stringify({ mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], crop: 28 }),
    );
    const fromFile = resolveSpec({ modelPath: model });
    assert.deepEqual(fromFile.spec, {
      channels: 3,
      channelOrder: 'rgb',
      scale: 255,
      mean: [0.5, 0.5, 0.5],
      std: [0.25, 0.25, 0.25],
      crop: 28,
    });
    assert.equal(fromFile.source, `file ${specPathFor(model)}`);
    const overridden = resolveSpec({ modelPath: model, crop: 24, std: [1, 1, 1] });
    assert.deepEqual([overridden.spec.crop, overridden.spec.std], [24, [1, 1, 1]]);
    assert.match(overridden.source, /with flag overrides$/);
    // An explicit preset wins over the file beside the model.
    assert.equal(resolveSpec({ modelPath: model, preset: 'cifar10' }).source, 'preset cifar10');
  });

  it('refuses to guess, and rejects malformed spec files naming them', () => {
    const dir = tmpDir('adapruner-spec-bad-');
    assert.throws(
      () => resolveSpec({ modelPath: path.join(dir, 'm.onnx') }),
      /say how to preprocess.*m\.preprocess\.json/,
    );
    const bad = (name: string, content: string) => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, content);
      return file;
    };
    assert.throws(
      () => resolveSpec({ specFile: bad('a.json', '{"mean": [0.5]') }),
      /a\.json: cannot read the preprocessing spec/,
    );
    assert.throws(
      () => resolveSpec({ specFile: bad('b.json', '{"mean":[0.5],"std":[1],"colour":1}') }),
      /b\.json: unknown key\(s\) colour/,
    );
    assert.throws(
      () => resolveSpec({ specFile: bad('c.json', '{"mean":[0.5,0.5,0.5],"std":[1,1]}') }),
      /std has 2 values for 3 channel/,
    );
    assert.throws(() => resolveSpec({ preset: 'cifar10', std: [1, 0, 1] }), /std values must be positive/);
    assert.throws(() => resolveSpec({ preset: 'nope' }), /unknown preset 'nope'/);
    // mean/std flags alone are a complete spec; one value means one channel.
    assert.equal(resolveSpec({ mean: [0.1307], std: [0.3081] }).spec.channels, 1);
  });
});

describe('seeded subsets and splits', () => {
  const labels = Int32Array.from({ length: 1000 }, (_, i) => (i % 7 === 0 ? 6 : i % 6)); // unequal classes

  it('balancedSubset: the requested count, classes within one of each other, same seed same subset', () => {
    const subset = balancedSubset(labels, 100, 1);
    assert.equal(subset.length, 100);
    assert.deepEqual(subset, balancedSubset(labels, 100, 1));
    assert.notDeepEqual(subset, balancedSubset(labels, 100, 2));
    const counts = new Array(7).fill(0);
    for (const i of subset) counts[labels[i]!]++;
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, counts.join());
    assert.ok(
      subset.every((v, k) => k === 0 || subset[k - 1]! < v),
      'ascending and distinct',
    );
  });

  it('property: any labels and count give a distinct, ascending, maximally balanced subset of that size', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 300 }),
        fc.integer({ min: 0, max: 320 }),
        fc.integer(),
        (raw, count, seed) => {
          const ls = Int32Array.from(raw);
          const subset = balancedSubset(ls, count, seed);
          assert.equal(subset.length, Math.min(count, ls.length));
          assert.ok(subset.every((v, k) => k === 0 || subset[k - 1]! < v));
          // Balanced: a class below the largest share must have given all it has.
          const available = new Map<number, number>();
          const taken = new Map<number, number>();
          for (const l of ls) available.set(l, (available.get(l) ?? 0) + 1);
          for (const i of subset) taken.set(ls[i]!, (taken.get(ls[i]!) ?? 0) + 1);
          const most = Math.max(0, ...taken.values());
          for (const [c, n] of available) {
            const t = taken.get(c) ?? 0;
            assert.ok(t >= most - 1 || t === n, `class ${c}: took ${t} of ${n}, most ${most}`);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('holdoutSplit: disjoint, complete, balanced holdout, reproducible', () => {
    const { rest, holdout } = holdoutSplit(labels, 70, 3);
    assert.equal(rest.length + holdout.length, labels.length);
    const all = new Set([...rest, ...holdout]);
    assert.equal(all.size, labels.length);
    const counts = new Array(7).fill(0);
    for (const i of holdout) counts[labels[i]!]++;
    assert.deepEqual(counts, new Array(7).fill(10));
    assert.deepEqual(holdoutSplit(labels, 70, 3).holdout, holdout);
  });

  it('shuffledIndices is a seeded permutation; mulberry32 is stable across runs', () => {
    const p = shuffledIndices(50, 9);
    assert.deepEqual(
      [...p].sort((a, b) => a - b),
      Array.from({ length: 50 }, (_, i) => i),
    );
    assert.deepEqual(shuffledIndices(50, 9), p);
    // Fixed values: a change of generator would silently change every subset and augmentation.
    const r = mulberry32(42);
    assert.deepEqual(
      [r(), r()].map((x) => x.toFixed(8)),
      ['0.60110375', '0.44829056'],
    );
  });
});

describe('a fixed-size preprocessing against the model input', () => {
  it('a 224 centre crop for a 64x64 model is refused in one line naming both sizes; a matching one passes', () => {
    assert.throws(
      () => specForInput(PRESETS.imagenet, [1, 3, 64, 64], 'unet.onnx'),
      /makes 224x224 images, but the model's input is 64x64/,
    );
    assert.equal(specForInput(PRESETS.imagenet, [1, 3, 224, 224]), PRESETS.imagenet);
    // Open height and width: nothing to compare.
    assert.equal(specForInput(PRESETS.imagenet, [1, 3, 'h', 'w']), PRESETS.imagenet);
  });
});
