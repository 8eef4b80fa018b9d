import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { REPO } from './helpers.js';

// The published shape of the package: compiled ESM with type declarations, importable by its own name.
test('the built package imports as `adapruner` (ESM + types) and prunes through the library API', () => {
  execFileSync(
    process.execPath,
    [path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'],
    { cwd: REPO, stdio: 'pipe' },
  );
  const dts = fs.readFileSync(path.join(REPO, 'dist', 'src', 'index.d.ts'), 'utf8');
  for (const name of ['loadModel', 'prune', 'finetune', 'evaluate', 'saveModel'])
    assert.match(dts, new RegExp(`\\b${name}\\b`), name);
  const script = `
    import { loadModel, prune, finetune, evaluate, countCost } from 'adapruner';
    const model = loadModel('fixtures/resnet_a.onnx');
    const before = countCost(model).totalMacs;
    const { model: slim, report } = await prune(model, { flops: 0.5, criterion: 'l1', roundTo: 1 });
    console.log(JSON.stringify({ before, after: countCost(slim).totalMacs, reported: report.after.macs,
      types: [typeof finetune, typeof evaluate] }));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: REPO,
    encoding: 'utf8',
  });
  const r = JSON.parse(out.trim().split('\n').pop()!) as {
    before: number;
    after: number;
    reported: number;
    types: string[];
  };
  assert.equal(r.before, 12_239_488);
  assert.ok(r.after <= r.before / 2 && r.after > 0.99 * (r.before / 2), JSON.stringify(r));
  assert.equal(r.after, r.reported);
  assert.deepEqual(r.types, ['function', 'function']);
  const version = execFileSync(
    process.execPath,
    [path.join(REPO, 'dist', 'bin', 'adapruner.js'), '--version'],
    { encoding: 'utf8' },
  );
  assert.equal(version.trim(), JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')).version);
});
