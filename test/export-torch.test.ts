import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { REPO, runCli, tmpDir } from './helpers.js';

/**
 * The PyTorch hand-off end to end on real torchvision classes: fixtures/handoff/make_handoff.py exports
 * ResNet-18, a MobileNetV2 and a DenseNet (BN kept); adapruner prunes each to half its MACs and writes
 * export-torch's module; fixtures/handoff/check_handoff.py applies it in torch. The torch logits must equal
 * the pruned ONNX file's in onnxruntime, both with the exported weights sliced in place and with a differently
 * initialised model given the pruned weights, and the parameter count must equal `inspect`'s.
 */

const PYTHON = '/usr/bin/python3';
const MODELS = ['resnet18', 'mobilenet_v2', 'densenet'] as const;
const TOLERANCE = 1e-4;

function torchMissing(): string | false {
  const r = spawnSync(PYTHON, ['-c', 'import torch, torchvision'], { stdio: 'ignore' });
  return r.status === 0
    ? false
    : `${PYTHON} cannot import torch and torchvision (apt-get install python3-torch python3-torchvision)`;
}

interface TorchResult {
  name: string;
  sliced: number[];
  loaded: number[];
  params: number;
  paramsLoaded: number;
  wrongModelError: string | null;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('export-torch: hand-off to PyTorch', { skip: torchMissing() }, () => {
  let dir = '';
  const torch = new Map<string, TorchResult>();
  let input: Float32Array;

  before(async () => {
    dir = tmpDir('adapruner-handoff-');
    execFileSync(PYTHON, [path.join(REPO, 'fixtures/handoff/make_handoff.py'), dir], { stdio: 'inherit' });
    const bytes = fs.readFileSync(path.join(dir, 'input.bin'));
    input = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    for (const name of MODELS) {
      const m = (f: string): string => path.join(dir, f);
      const pruned = await runCli([
        'prune',
        m(`${name}.onnx`),
        '--flops',
        '0.5',
        '-o',
        m(`${name}-slim.onnx`),
        '--plan-out',
        m(`${name}.plan.json`),
        '--no-measure-latency',
        '--no-report',
      ]);
      assert.equal(pruned.code, 0, pruned.stderr);
      const exported = await runCli([
        'export-torch',
        m(`${name}.onnx`),
        '--plan',
        m(`${name}.plan.json`),
        '--weights',
        m(`${name}-slim.onnx`),
        '-o',
        m(`${name}_slim.py`),
      ]);
      assert.equal(exported.code, 0, exported.stderr);
      assert.ok(fs.existsSync(m(`${name}_slim.weights.bin`)));
    }
    const out = execFileSync(PYTHON, [path.join(REPO, 'fixtures/handoff/check_handoff.py'), dir, ...MODELS], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
    });
    for (const line of out.trim().split('\n')) {
      const r = JSON.parse(line) as TorchResult;
      torch.set(r.name, r);
    }
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const name of MODELS)
    it(`${name}: torch logits equal the pruned ONNX's, and the parameter count equals inspect's`, async () => {
      const file = path.join(dir, `${name}-slim.onnx`);
      const session = await ort.InferenceSession.create(file);
      const feeds = { input: new ort.Tensor('float32', input, [2, 3, 32, 32]) };
      const logits = (await session.run(feeds)).logits!.data as Float32Array;
      await session.release();
      const r = torch.get(name)!;
      const sliced = maxAbsDiff(r.sliced, logits);
      const loaded = maxAbsDiff(r.loaded, logits);
      console.log(
        `# ${name}: max |torch - onnxruntime| sliced ${sliced.toExponential(2)}, loaded ${loaded.toExponential(2)}`,
      );
      assert.ok(sliced <= TOLERANCE, `sliced: ${sliced}`);
      assert.ok(loaded <= TOLERANCE, `loaded: ${loaded}`);
      // The logits are not trivially equal: they vary across classes and images.
      assert.ok(Math.max(...logits) - Math.min(...logits) > 0.1);

      const inspected = await runCli(['inspect', file, '--json']);
      assert.equal(inspected.code, 0, inspected.stderr);
      const params = JSON.parse(inspected.stdout).params.trainable as number;
      assert.equal(r.params, params);
      assert.equal(r.paramsLoaded, params);
      const original = JSON.parse(
        (await runCli(['inspect', path.join(dir, `${name}.onnx`), '--json'])).stdout,
      ).params.trainable as number;
      assert.ok(params < original * 0.75, `${params} of ${original} parameters left`);

      assert.match(r.wrongModelError ?? '', new RegExp(`does not match ${name}\\.onnx.*no module`));
    });

  it('refuses bad requests with one line and exit code 2, writing nothing', async () => {
    const m = (f: string): string => path.join(dir, f);
    const run = async (...args: string[]) => {
      const r = await runCli(['export-torch', ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      return r.stderr;
    };
    // A plan made for another model.
    assert.match(
      await run(m('densenet.onnx'), '--plan', m('resnet18.plan.json'), '-o', m('x.py')),
      /resnet18\.plan\.json: plan has \d+ groups but the model has \d+/,
    );
    // Weights from another pruning of the same model.
    const other = await runCli([
      'prune',
      m('densenet.onnx'),
      '--flops',
      '0.7',
      '-o',
      m('densenet-70.onnx'),
      '--no-measure-latency',
      '--no-report',
    ]);
    assert.equal(other.code, 0, other.stderr);
    assert.match(
      await run(
        m('densenet.onnx'),
        '--plan',
        m('densenet.plan.json'),
        '--weights',
        m('densenet-70.onnx'),
        '-o',
        m('x.py'),
      ),
      /densenet-70\.onnx: '.*' is \[.*\] here but the plan makes it \[.*\]/,
    );
    // Never over an input; only a Python module name.
    fs.copyFileSync(m('densenet.plan.json'), m('plan_copy.py'));
    const planBytes = fs.readFileSync(m('plan_copy.py'));
    assert.match(
      await run(m('densenet.onnx'), '--plan', m('plan_copy.py'), '-o', m('plan_copy.py')),
      /plan_copy\.py: would overwrite an input of this run/,
    );
    assert.deepEqual(fs.readFileSync(m('plan_copy.py')), planBytes);
    assert.match(
      await run(m('densenet.onnx'), '--plan', m('densenet.plan.json'), '-o', m('densenet.onnx')),
      /must be a Python file ending in \.py/,
    );
    assert.ok(!fs.existsSync(m('x.py')) && !fs.existsSync(m('x.weights.bin')));
  });
});
