import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { DataType, Graph, Model, Node, Tensor, Value, saveModel, tensorType } from '../src/ir/index.js';
import { fixture, REPO, tmpDir } from './helpers.js';

function cli(...args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', path.join(REPO, 'bin', 'adapruner.ts'), ...args],
    { cwd: REPO, encoding: 'utf8' },
  );
  return { status: r.status, stderr: r.stderr };
}

/** An image folder of `classes` class folders with two 28x28 grey PNGs each. */
async function imageFolder(dir: string, classes: number): Promise<string> {
  for (let c = 0; c < classes; c++) {
    const folder = path.join(dir, 'data', `class${String(c).padStart(2, '0')}`);
    fs.mkdirSync(folder, { recursive: true });
    for (let i = 0; i < 2; i++) {
      const pixels = Buffer.alloc(28 * 28, (c * 20 + i * 7) % 256);
      await sharp(pixels, { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toFile(path.join(folder, `${i}.png`));
    }
  }
  return path.join(dir, 'data');
}

/** input [N,1,28,28] -> Flatten -> (Gemm with W [10,784] if `withGemm`) -> `op` -> logits [N,10]. */
function tinyModel(file: string, op: string, withGemm: boolean): void {
  const g = new Graph();
  const input = new Value('input', tensorType(DataType.FLOAT, ['N', 1, 28, 28]));
  g.inputs.push(input);
  let x = new Value('flat');
  g.addNode(new Node('Flatten', [input], [x], 'flatten'));
  if (withGemm) {
    const w = g.addInitializer(
      new Value('fc.weight'),
      Tensor.fromArray(DataType.FLOAT, [10, 784], new Float32Array(7840).fill(0.01)),
    );
    const y = new Value('fc_out');
    g.addNode(new Node('Gemm', [x, w], [y], 'fc'));
    g.nodes.at(-1)!.attributes.set('transB', { type: 2, value: 1 });
    x = y;
  } else {
    const y = new Value('sliced');
    const idx = (name: string, v: number): Value => g.addInitializer(new Value(name), Tensor.int64([v]));
    g.addNode(new Node('Slice', [x, idx('s', 0), idx('e', 10), idx('a', 1)], [y], 'first10'));
    x = y;
  }
  const logits = new Value('logits', tensorType(DataType.FLOAT, ['N', 10]));
  g.addNode(new Node(op, [x], [logits], 'head'));
  g.outputs.push(logits);
  const model = new Model(g);
  model.opsetImports = [{ domain: '', version: 13 }];
  saveModel(model, file);
}

test('finetune refuses bad inputs with exit code 2, a clear message and no output', async () => {
  const dir = tmpDir();
  const out = path.join(dir, 'out.onnx');
  const leftovers = (): string[] => fs.readdirSync(dir).filter((f) => f.startsWith('out'));
  const common = ['--preset', 'fmnist', '--batch', '2', '--epochs', '1', '-o', out];

  const eleven = await imageFolder(dir, 11);
  let r = cli('finetune', fixture('fmnist_cnn.onnx'), '--data', eleven, ...common);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /label 10 of .*class10.* is out of range: the model has 10 classes/);
  assert.deepEqual(leftovers(), []);

  const ten = path.join(dir, 'ten');
  fs.mkdirSync(ten);
  for (let c = 0; c < 10; c++)
    fs.cpSync(path.join(eleven, `class${String(c).padStart(2, '0')}`), path.join(ten, `class${c}`), {
      recursive: true,
    });

  const noParams = path.join(dir, 'noparams.onnx');
  tinyModel(noParams, 'Relu', false);
  r = cli('finetune', noParams, '--data', ten, ...common);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /no trainable parameters/);
  assert.deepEqual(leftovers(), []);

  const noRule = path.join(dir, 'norule.onnx');
  tinyModel(noRule, 'Softplus', true);
  r = cli('finetune', noRule, '--data', ten, ...common);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /node 'head': op Softplus has no backward rule/);
  assert.deepEqual(leftovers(), []);

  // The same data and a trainable model: it works, so the failures above came from the causes named.
  const ok = path.join(dir, 'ok.onnx');
  tinyModel(ok, 'Relu', true);
  r = cli('finetune', ok, '--data', ten, ...common);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(fs.existsSync(out));
});

const FMNIST = '/usr/share/datasets/fashion-mnist';

/** `finetune` of the Fashion-MNIST fixture on `limit` training images: 2 epochs in batches of 32, 1 thread. */
function fmnistFinetune(out: string, limit: number, ...extra: string[]): string[] {
  const data = ['--data', FMNIST, '--preset', 'fmnist', '--limit', `${limit}`];
  const run = ['--batch', '32', '--epochs', '2', '--threads', '1'];
  return ['finetune', fixture('fmnist_cnn.onnx'), ...data, ...run, '-o', out, ...extra];
}

/** Starts the CLI, waits for `file` to appear (polling), then SIGKILLs it; resolves with how it ended. */
function killWhenWritten(
  args: string[],
  file: string,
): Promise<{ signal: NodeJS.Signals | null; stderr: string }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(REPO, 'bin', 'adapruner.ts'), ...args],
    { cwd: REPO },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const poll = setInterval(() => {
    if (fs.existsSync(file)) child.kill('SIGKILL');
  }, 10);
  return new Promise((resolve) =>
    child.on('exit', (_code, signal) => {
      clearInterval(poll);
      resolve({ signal, stderr });
    }),
  );
}

test(
  'finetune killed (SIGKILL) during epoch 2 of 2 and resumed writes the same model as an uninterrupted run',
  { skip: fs.existsSync(FMNIST) ? false : `${FMNIST} is absent` },
  async () => {
    const dir = tmpDir();
    // 100 steps per epoch (about 1.5 s at 1 thread), so the kill lands well inside epoch 2.
    const args = (out: string): string[] => fmnistFinetune(out, 3200, '--seed', '3');
    const straight = path.join(dir, 'straight.onnx');
    assert.equal(cli(...args(straight)).status, 0);
    const resumed = path.join(dir, 'resumed.onnx');
    const killed = await killWhenWritten(args(resumed), `${resumed}.ckpt`);
    assert.equal(killed.signal, 'SIGKILL', `the run was killed, not finished: ${killed.stderr}`);
    assert.doesNotMatch(killed.stderr, /epoch 2:/);
    assert.ok(!fs.existsSync(resumed), 'a killed run writes no model');
    const r = cli(...args(resumed), '--resume');
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /epoch 1:/, 'epoch 1 is not run again');
    assert.match(r.stderr, /epoch 2:/);
    assert.ok(
      fs.readFileSync(resumed).equals(fs.readFileSync(straight)),
      'same bytes as the uninterrupted run',
    );
  },
);

test('finetune and recalibrate write the files beside the input model next to their output; eval then needs no preset', async () => {
  const dir = tmpDir();
  const data = await imageFolder(dir, 10);
  const model = path.join(dir, 'm.onnx');
  fs.copyFileSync(fixture('fmnist_cnn.onnx'), model);
  const spec = `${JSON.stringify({ channels: 1, mean: [0.286], std: [0.353] })}\n`;
  fs.writeFileSync(path.join(dir, 'm.preprocess.json'), spec);
  const tuned = path.join(dir, 'ft.onnx');
  let r = cli('finetune', model, '--data', data, '--batch', '2', '--epochs', '1', '-o', tuned);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.readFileSync(path.join(dir, 'ft.preprocess.json'), 'utf8'), spec);
  assert.equal(
    fs.existsSync(path.join(dir, 'ft.layout.json')),
    false,
    'no layout beside the input: none written',
  );
  r = cli('eval', tuned, '--data', data);
  assert.equal(r.status, 0, r.stderr);

  const recalibrated = path.join(dir, 'rec.onnx');
  r = cli('recalibrate', model, '--data', data, '--batch', '2', '--batches', '2', '-o', recalibrated);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.readFileSync(path.join(dir, 'rec.preprocess.json'), 'utf8'), spec);

  // The copy would land on the spec this run reads: refused before any work, nothing written.
  const clash = path.join(dir, 'clash.onnx');
  const clashSpec = path.join(dir, 'clash.preprocess.json');
  fs.writeFileSync(clashSpec, spec);
  r = cli(
    'finetune',
    model,
    '--data',
    data,
    '--spec',
    clashSpec,
    '--batch',
    '2',
    '--epochs',
    '1',
    '-o',
    clash,
  );
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /clash\.preprocess\.json/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.equal(fs.existsSync(clash), false);
  assert.equal(fs.readFileSync(clashSpec, 'utf8'), spec);
});

test(
  'finetune --optimizer adamw: stopped after epoch 1 and resumed writes the same bytes as a straight run, unlike SGD',
  { skip: fs.existsSync(FMNIST) ? false : `${FMNIST} is absent` },
  () => {
    const dir = tmpDir();
    const args = (out: string, ...extra: string[]): string[] => fmnistFinetune(out, 320, ...extra);
    const straight = path.join(dir, 'straight.onnx');
    assert.equal(cli(...args(straight, '--optimizer', 'adamw')).status, 0);
    // The second moments and the step count behind the bias corrections must survive the checkpoint.
    const resumed = path.join(dir, 'resumed.onnx');
    let r = cli(...args(resumed, '--optimizer', 'adamw', '--stop-after-epoch', '1'));
    assert.equal(r.status, 0, r.stderr);
    r = cli(...args(resumed, '--optimizer', 'adamw', '--resume'));
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /epoch 1:/, 'epoch 1 is not run again');
    assert.ok(fs.readFileSync(resumed).equals(fs.readFileSync(straight)), 'same bytes as the straight run');
    const sgd = path.join(dir, 'sgd.onnx');
    assert.equal(cli(...args(sgd)).status, 0);
    assert.ok(!fs.readFileSync(sgd).equals(fs.readFileSync(straight)), 'AdamW is not SGD');
  },
);
