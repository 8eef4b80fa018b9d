import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { UserError } from '../src/errors.js';
import { serializeModel, verifyModel } from '../src/ir/index.js';
import { main } from '../src/cli/main.js';
import { CRITERIA, pruneModel, type Plan } from '../src/prune/index.js';
import { FIXTURE_MODELS, fixture, tmpDir } from './helpers.js';
import { load, maxAbsDiff, runModel } from './prune-helpers.js';

describe('prune: plans', () => {
  it('a saved plan re-applies to the same model byte for byte, and records metadata', async () => {
    const a = await pruneModel(load(fixture('senet.onnx')), { flops: 0.5, criterion: 'fpgm' });
    const plan = JSON.parse(JSON.stringify(a.plan)) as Plan;
    const b = await pruneModel(load(fixture('senet.onnx')), { plan });
    assert.deepEqual(serializeModel(b.model), serializeModel(a.model));
    const meta = JSON.parse(a.model.getMetadata('adapruner.pruning')!);
    assert.equal(meta.criterion, 'fpgm');
    assert.equal(meta.original.macs, 10077632);
    assert.equal(meta.pruned.macs, a.report.pruned.macs);
  });

  it('rejects plans that do not fit the model, with the group named', async () => {
    const { plan } = await pruneModel(load(fixture('resnet_b.onnx')), { flops: 0.5, validate: false });
    const bad = (edit: (p: Plan) => void, pattern: RegExp) => async () => {
      const p = JSON.parse(JSON.stringify(plan)) as Plan;
      edit(p);
      await assert.rejects(
        pruneModel(load(fixture('resnet_b.onnx')), { plan: p, planSource: 'p.json' }),
        (e: Error) => {
          assert.ok(e instanceof UserError, e.message);
          assert.match(e.message, pattern);
          return true;
        },
      );
    };
    await bad((p) => (p.groups[2]!.keep = [999]), /p\.json: group 2: channel index 999 is out of range/)();
    await bad((p) => (p.groups[2]!.keep = [3, 1]), /group 2: "keep" must be strictly ascending/)();
    await bad(
      (p) => (p.groups[0]!.keep = [0]),
      /group 0 is frozen \(graph input 'input'\) and must keep all 3/,
    )();
    await bad((p) => p.groups.pop(), /made for another model/)();
    await bad((p) => (p.groups[1]!.anchor = 'x'), /group 1: anchor "x" does not match/)();
    await bad((p) => ((p as { version: number }).version = 9), /unsupported plan version 9/)();
  });

  it('CLI: prune writes the model and the plan; --dry-run writes no model; errors exit 2', async () => {
    const dir = tmpDir();
    const out = path.join(dir, 'out.onnx');
    const planFile = path.join(dir, 'plan.json');
    const log = console.log;
    const lines: string[] = [];
    console.log = (s: string) => lines.push(s);
    try {
      assert.equal(
        await main([
          'prune',
          fixture('vgg.onnx'),
          '--flops',
          '0.5',
          '--round-to',
          '4',
          '-o',
          out,
          '--plan-out',
          planFile,
          '--verbose',
        ]),
        0,
      );
      assert.equal(
        await main([
          'prune',
          fixture('vgg.onnx'),
          '--plan-in',
          planFile,
          '--dry-run',
          '-o',
          path.join(dir, 'no.onnx'),
        ]),
        0,
      );
      assert.equal(
        await main(['prune', fixture('vgg.onnx'), '--flops', '0.0001', '-o', path.join(dir, 'no.onnx')]),
        2,
      );
    } finally {
      console.log = log;
    }
    assert.ok(fs.existsSync(out) && fs.existsSync(planFile));
    assert.ok(!fs.existsSync(path.join(dir, 'no.onnx')));
    assert.match(lines[0]!, /group\s+module\s+members\s+before\s+after/);
    assert.match(lines[0]!, /MACs:\s+2,818,368 -> /);
    assert.ok(verifyModel(load(out)).length === 0);
  });
});

describe('prune: property (fast-check)', () => {
  const files = FIXTURE_MODELS.flatMap((m) => [fixture(`${m}.onnx`), fixture(`${m}-bnfolded.onnx`)]);
  it('random budgets, criteria, seeds and rounding give a valid running model or a clean UserError', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...files),
        fc.double({ min: 0.02, max: 1, noNaN: true }),
        // taylor needs data (data-free it is l1 with a warning).
        fc.constantFrom(...CRITERIA.filter((c) => c !== 'taylor')),
        fc.integer({ min: 0, max: 1000 }),
        fc.constantFrom(1, 2, 4, 8),
        fc.boolean(),
        fc.boolean(),
        async (file, ratio, criterion, seed, roundTo, uniform, byParams) => {
          try {
            const budget = byParams ? { params: ratio } : { flops: ratio };
            const { model, report } = await pruneModel(load(file), {
              ...budget,
              criterion,
              seed,
              roundTo,
              uniform,
            });
            assert.equal(verifyModel(model).length, 0);
            const key = byParams ? 'params' : 'macs';
            assert.ok(report.pruned[key] <= ratio * report.original[key] + 1e-6);
            const out = await runModel(model, 3);
            assert.ok(out[0]!.every(Number.isFinite));
            assert.equal(maxAbsDiff(out, out), 0);
          } catch (e) {
            if (!(e instanceof UserError)) throw e;
            assert.ok(!e.message.includes('\n'));
          }
        },
      ),
      { numRuns: 15, seed: 20240 },
    );
  });
});
