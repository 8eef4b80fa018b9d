import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { analyzeModel, pruneModel } from '../src/prune/index.js';
import { ValidationError, validateModel } from '../src/runtime/validate.js';
import { applyKeep } from '../src/prune/rewrite.js';
import { REPO, fixture, tmpDir } from './helpers.js';
import { load } from './prune-helpers.js';

const SQUEEZENET = fixture('families/squeezenet_tv.onnx');
/** The expand1x1 branch of a Fire module: one input of the Concat that ends the module. */
const BRANCH = '/features/features.3/expand1x1/Conv';

/** A plan (from a keep-all prune) whose Concat group keeps every class except those of BRANCH's output. */
async function planEmptyingBranch(): Promise<{ plan: object; group: number }> {
  const analysis = await analyzeModel(load(SQUEEZENET));
  const space = analysis.spaces.find((s) => s.value.producer?.name === BRANCH)!;
  const branchClasses = new Set(space.classOf);
  const { plan } = await pruneModel(load(SQUEEZENET), { flops: 1, validate: false });
  const group = plan.groups[space.group]!;
  group.keep = group.keep.filter((c) => !branchClasses.has(c));
  assert.ok(group.keep.length > 0 && group.keep.length < group.channels);
  return { plan, group: space.group };
}

describe('validation of the pruned model', () => {
  it('rejects a Concat branch cut to 0 channels, naming the Conv, on one line', async () => {
    const { plan } = await planEmptyingBranch();
    const analysis = await analyzeModel(load(SQUEEZENET));
    const keep = (plan as { groups: { channels: number; keep: number[] }[] }).groups.map((g) => {
      const m = new Uint8Array(g.channels);
      for (const c of g.keep) m[c] = 1;
      return m;
    });
    const model = applyKeep(analysis, keep);
    await assert.rejects(validateModel(model), (e: Error) => {
      assert.ok(e instanceof ValidationError);
      assert.match(e.message, new RegExp(`Conv '${BRANCH}' has 0 output channels`));
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
  });

  it("reports onnxruntime's rejection (at the default optimisation level) on one line with the node", async () => {
    const model = load(SQUEEZENET);
    const relu = model.graph.nodes.find((n) => n.opType === 'Relu')!;
    relu.opType = 'NoSuchOp';
    await assert.rejects(validateModel(model), (e: Error) => {
      assert.ok(e instanceof ValidationError);
      assert.match(e.message, /onnxruntime rejects it/);
      assert.ok(e.message.includes(relu.name), e.message);
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
  });

  it('CLI: a plan emptying a branch exits 2 with one stderr line and writes nothing', async () => {
    const { plan } = await planEmptyingBranch();
    const dir = tmpDir();
    const planFile = path.join(dir, 'plan.json');
    const out = path.join(dir, 'out.onnx');
    fs.writeFileSync(planFile, JSON.stringify(plan));
    // A child process, so that anything onnxruntime prints natively to stderr is seen too.
    const run = await promisify(execFile)(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(REPO, 'bin/adapruner.ts'),
        'prune',
        SQUEEZENET,
        '--plan-in',
        planFile,
        '-o',
        out,
      ],
      { cwd: REPO },
    ).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(run.code, 2, run.stderr);
    // Besides progress lines and warnings, stderr holds the error alone: no onnxruntime log, no stack.
    const lines = run.stderr
      .trim()
      .split('\n')
      .filter((l) => !l.endsWith('...') && !l.startsWith('adapruner: warning:'));
    assert.equal(lines.length, 1, run.stderr);
    assert.match(
      lines[0]!,
      /^adapruner: the pruned model fails validation and was not written: Conv '.*expand1x1\/Conv' has 0 output channels$/,
    );
    assert.deepEqual(fs.readdirSync(dir), ['plan.json']);
    fs.rmSync(dir, { recursive: true });
  });
});
