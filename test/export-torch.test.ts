import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { loadModel } from '../src/ir/load.js';
import { REPO, fixture, runCli, tmpDir } from './helpers.js';

/**
 * The PyTorch hand-off end to end on real torchvision classes: fixtures/handoff/make_handoff.py exports fifteen
 * families (BN kept), small instances at 32x32; adapruner prunes each to half its MACs and writes export-torch's
 * module; fixtures/handoff/check_handoff.py applies it in torch, in one Python process for all. The torch logits
 * must equal the pruned ONNX file's in onnxruntime, both with the exported weights sliced in place and with a
 * differently initialised model given the pruned weights; a train-mode forward and backward must run (GoogLeNet's
 * auxiliary heads included) and reach every parameter; the parameter count must equal `inspect`'s and be
 * under 80% of the original's.
 */

const PYTHON = '/usr/bin/python3';
/** Family -> extra prune arguments. */
const MODELS: Record<string, string[]> = {
  resnet18: [],
  mobilenet_v2: [],
  densenet: [],
  regnet_y: [],
  regnet_x: [],
  efficientnet_b0: [],
  squeezenet1_1: [],
  mobilenet_v3_small: [],
  // Rounding to 2 lets the plan split the chunk()ed stages unequally; --torch-compatible keeps them equal.
  shufflenet_v2: ['--round-to', '2', '--torch-compatible'],
  googlenet: [],
  convnext: [],
  resnext: [],
  wide_resnet: [],
  mnasnet: [],
  vgg_bn: [],
};
/** inspect's `trainable` counts Conv/Linear weights and BN affine only: not LayerNorm or ConvNeXt's layer scale. */
const INSPECT_COUNTS_LESS = new Set(['convnext']);
const TOLERANCE = 1e-4;

function torchMissing(): string | false {
  const r = spawnSync(PYTHON, ['-c', 'import torch, torchvision'], { stdio: 'ignore' });
  return r.status === 0
    ? false
    : `${PYTHON} cannot import torch and torchvision (apt-get install python3-torch python3-torchvision)`;
}

interface TorchResult {
  name: string;
  error?: string;
  trace?: string;
  sliced: number[];
  loaded: number[];
  params: number;
  paramsLoaded: number;
  paramsBefore: number;
  wrongModelError: string | null;
  train: string | null;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Names that broke the generated module when it wrote them into its docstring (code run on import, or none). */
const HOSTILE_NAMES = ['m"""+str(open("pwned","w"))+"""x', "n\\N{BOGUS}\\x4 \u00e9\u2028'q"];

describe('export-torch: hand-off to PyTorch', { skip: torchMissing() }, () => {
  let dir = '';
  const torch = new Map<string, TorchResult>();
  let input: Float32Array;
  const m = (f: string): string => path.join(dir, f);

  before(async () => {
    dir = tmpDir('adapruner-handoff-');
    execFileSync(PYTHON, [path.join(REPO, 'fixtures/handoff/make_handoff.py'), dir], { stdio: 'inherit' });
    const bytes = fs.readFileSync(m('input.bin'));
    input = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    for (const [name, extra] of Object.entries(MODELS)) {
      const pruned = await runCli([
        'prune',
        m(`${name}.onnx`),
        '--flops',
        '0.5',
        ...extra,
        '-o',
        m(`${name}-slim.onnx`),
        '--plan-out',
        m(`${name}.plan.json`),
        '--no-measure-latency',
        '--no-report',
      ]);
      assert.equal(pruned.code, 0, `${name}: ${pruned.stderr}`);
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
      assert.equal(exported.code, 0, `${name}: ${exported.stderr}`);
      assert.ok(fs.existsSync(m(`${name}_slim.weights.bin`)));
    }
    const out = execFileSync(
      PYTHON,
      [path.join(REPO, 'fixtures/handoff/check_handoff.py'), dir, ...Object.keys(MODELS)],
      { encoding: 'utf8', maxBuffer: 1 << 26 },
    );
    for (const line of out.trim().split('\n')) {
      const r = JSON.parse(line) as TorchResult;
      torch.set(r.name, r);
    }
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const name of Object.keys(MODELS))
    it(`${name}: torch logits equal the pruned ONNX's, train mode runs, params equal inspect's`, async () => {
      const r = torch.get(name)!;
      assert.ok(!r.error, `${r.error}\n${r.trace}`);
      const file = m(`${name}-slim.onnx`);
      const session = await ort.InferenceSession.create(file);
      const feeds = { input: new ort.Tensor('float32', input, [2, 3, 32, 32]) };
      const logits = (await session.run(feeds)).logits!.data as Float32Array;
      await session.release();
      const sliced = maxAbsDiff(r.sliced, logits);
      const loaded = maxAbsDiff(r.loaded, logits);
      console.log(
        `# ${name}: max |torch - onnxruntime| sliced ${sliced.toExponential(2)}, loaded ${loaded.toExponential(2)}; train-mode forward+backward ${r.train ?? 'ok'}`,
      );
      assert.ok(sliced <= TOLERANCE, `sliced: ${sliced}`);
      assert.ok(loaded <= TOLERANCE, `loaded: ${loaded}`);
      // The logits are not trivially equal: they vary across classes and images.
      assert.ok(Math.max(...logits) - Math.min(...logits) > 0.1, 'logits vary');
      assert.equal(r.train, null);

      const inspected = await runCli(['inspect', file, '--json']);
      assert.equal(inspected.code, 0, inspected.stderr);
      const params = JSON.parse(inspected.stdout).params.trainable as number;
      if (INSPECT_COUNTS_LESS.has(name)) assert.ok(r.params > params);
      else assert.equal(r.params, params);
      assert.equal(r.paramsLoaded, r.params);
      assert.ok(r.params < r.paramsBefore * 0.8, `${r.params} of ${r.paramsBefore} parameters left`);

      assert.match(r.wrongModelError ?? '', new RegExp(`does not match ${name}\\.onnx`));
    });

  it('a module generated for hostile file names imports and runs nothing', async () => {
    const model = m('squeezenet1_1.onnx');
    for (const [i, hostile] of HOSTILE_NAMES.entries()) {
      const work = m(`hostile${i}`);
      fs.mkdirSync(work);
      const file = path.join(work, `${hostile}.onnx`);
      const plan = path.join(work, `${hostile}.plan.json`);
      fs.copyFileSync(model, file);
      fs.copyFileSync(m('squeezenet1_1.plan.json'), plan);
      const r = await runCli([
        'export-torch',
        file,
        '--plan',
        plan,
        '--weights',
        m('squeezenet1_1-slim.onnx'),
        '-o',
        path.join(work, 'slim.py'),
      ]);
      assert.equal(r.code, 0, r.stderr);
      const out = execFileSync(PYTHON, ['-c', 'import json, slim; print(json.dumps(slim.SPEC["source"]))'], {
        cwd: work,
        encoding: 'utf8',
        env: { ...process.env, PYTHONPATH: work },
      });
      assert.equal(JSON.parse(out).model, `${hostile}.onnx`);
      assert.deepEqual(
        fs.readdirSync(work).sort(),
        [`${hostile}.onnx`, `${hostile}.plan.json`, 'slim.py', 'slim.weights.bin'].sort(),
      );
    }
  });
});

/**
 * Transformers handed back to PyTorch: the ViT and BERT-like fixtures (torchvision VisionTransformer; BertLike on
 * nn.TransformerEncoder, opset 14 and 17) are pruned in heads, MLP widths and the stream at once; the torch
 * models that fixtures/make_transformers.py exported are rebuilt from their seeds by
 * fixtures/handoff/check_transformers.py, which applies export-torch's module. The logits must equal
 * onnxruntime's on the pruned file, with torch's regular path and where it would take its fused kernels, with
 * the weights sliced in place and loaded into another instance; a train-mode step must reach every parameter.
 */
const TRANSFORMERS: Record<string, { file: string; inputs: Record<string, number[]> }> = {
  vit: { file: 'vit.onnx', inputs: { input: [2, 3, 32, 32] } },
  'vit-opset17': { file: 'vit-opset17.onnx', inputs: { input: [2, 3, 32, 32] } },
  bert: { file: 'bert.onnx', inputs: { input_ids: [2, 16], token_type_ids: [2, 16] } },
  'bert-opset17': { file: 'bert-opset17.onnx', inputs: { input_ids: [2, 16], token_type_ids: [2, 16] } },
  // Padded sequences: the key padding mask, where torch 1.13's encoder would take its nested-tensor path.
  bert_mask: {
    file: 'bert_mask.onnx',
    inputs: { input_ids: [3, 16], token_type_ids: [3, 16], attention_mask: [3, 16] },
  },
  // bert's plan with 2 heads of 16 kept per layer and the stream cut to 32: heads x head dim = width, so torch's
  // own MultiheadAttention with new attributes, whose fused kernels run under no_grad (an even head count).
  'bert-even': { file: 'bert.onnx', inputs: { input_ids: [2, 16], token_type_ids: [2, 16] } },
  // nn.TransformerEncoder sequence first (its default), pre-norm, ReLU, 6 heads of 8: exported at test time.
  encoder: { file: '', inputs: { ids: [3, 12] } },
};

/** bert's plan made even (see 'bert-even'). */
function evenPlan(from: string, to: string): void {
  const plan = JSON.parse(fs.readFileSync(from, 'utf8')) as {
    groups: { anchor: string; keep: number[] }[];
  };
  for (const g of plan.groups)
    if (g.anchor.startsWith('/word_embeddings/')) g.keep = g.keep.slice(0, 32);
    else if (g.anchor.includes('/self_attn/MatMul')) g.keep = [0, 2];
  fs.writeFileSync(to, JSON.stringify(plan));
}
/** Width of the stream, of the MLP, heads and head dim before pruning. */
const geometry = (name: string) =>
  name === 'encoder'
    ? { width: 48, mlp: 96, heads: 6, headDim: 8 }
    : { width: 64, mlp: 128, heads: 4, headDim: 16 };

interface TransformerResult {
  name: string;
  error?: string;
  trace?: string;
  rebuilt: number;
  original: number[];
  sliced: number[];
  fastPath: number[];
  fused: number;
  loaded: number[];
  attention: Record<string, [string, number, number, number]>;
  train: string | null;
}

describe('export-torch: transformers to PyTorch', { skip: torchMissing() }, () => {
  let dir = '';
  const results = new Map<string, TransformerResult>();
  const m = (f: string): string => path.join(dir, f);
  const shapeArgs = (name: string): string[] =>
    name.startsWith('bert')
      ? Object.keys(TRANSFORMERS[name]!.inputs).flatMap((input) => ['--input-shape', `${input}=1x16`])
      : [];
  const source = (name: string): string =>
    name === 'encoder' ? m('encoder.onnx') : fixture(`transformers/${TRANSFORMERS[name]!.file}`);

  before(async () => {
    dir = tmpDir('adapruner-handoff-tf-');
    const check = path.join(REPO, 'fixtures/handoff/check_transformers.py');
    execFileSync(PYTHON, [check, '--export-encoder', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
    for (const name of Object.keys(TRANSFORMERS)) {
      const even = name === 'bert-even';
      if (even) evenPlan(m('bert.plan.json'), m('bert-even.plan.json'));
      const pruned = await runCli([
        'prune',
        source(name),
        ...(even ? ['--plan-in', m('bert-even.plan.json')] : ['--flops', '0.4', '--round-to', '1']),
        ...shapeArgs(name),
        '-o',
        m(`${name}-slim.onnx`),
        ...(even ? [] : ['--plan-out', m(`${name}.plan.json`)]),
        '--no-measure-latency',
        '--no-report',
      ]);
      assert.equal(pruned.code, 0, `${name}: ${pruned.stderr}`);
      const exported = await runCli([
        'export-torch',
        source(name),
        '--plan',
        m(`${name}.plan.json`),
        '--weights',
        m(`${name}-slim.onnx`),
        ...shapeArgs(name),
        '-o',
        m(`${name.replace('-', '_')}_slim.py`),
      ]);
      assert.equal(exported.code, 0, `${name}: ${exported.stderr}`);
    }
    const out = execFileSync(PYTHON, [check, dir, ...Object.keys(TRANSFORMERS), 'replacement'], {
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    });
    for (const line of out.trim().split('\n')) {
      const r = JSON.parse(line) as TransformerResult;
      results.set(r.name, r);
    }
  });

  it("SlimMultiheadAttention computes what torch's MultiheadAttention does where both apply", () => {
    const r = results.get('replacement') as unknown as { maxDiff: number; cases: number; error?: string };
    assert.ok(!r.error, r.error);
    // Self- and cross-attention, batch_first or not, unbatched, bool/float masks, key padding, weights.
    assert.equal(r.cases, 26);
    assert.ok(r.maxDiff <= 1e-6, `max difference ${r.maxDiff}`);
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const logitsOf = async (file: string, name: string): Promise<Float32Array> => {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [input, dims] of Object.entries(TRANSFORMERS[name]!.inputs)) {
      const bytes = new Uint8Array(fs.readFileSync(m(`${name}.${input}.bin`))).buffer; // aligned copy
      const data = input === 'input' ? new Float32Array(bytes) : new BigInt64Array(bytes);
      feeds[input] = new ort.Tensor(input === 'input' ? 'float32' : 'int64', data, dims);
    }
    const session = await ort.InferenceSession.create(file);
    try {
      return (await session.run(feeds)).logits!.data as Float32Array;
    } finally {
      await session.release();
    }
  };

  for (const name of Object.keys(TRANSFORMERS))
    it(`${name}: heads, MLP and stream cut; torch logits equal the pruned ONNX's; train mode runs`, async () => {
      const r = results.get(name)!;
      assert.ok(!r.error, `${r.error}\n${r.trace}`);
      // The rebuilt torch model is the one the fixture was exported from.
      assert.equal(r.rebuilt, 0);
      const original = await logitsOf(source(name), name);
      const shape = geometry(name);
      assert.ok(maxAbsDiff(r.original, original) <= TOLERANCE);

      const spec = specOf(m(`${name.replace('-', '_')}_slim.py`)) as ReturnType<typeof specOf> & {
        attention: { path: string; heads: number; kept: number[]; headDim: number; embedDim: number }[];
        views: { path: string; before: number; after: number }[];
      };
      assert.equal(spec.attention.length, 2);
      assert.ok(
        spec.attention.every((a) => a.heads === shape.heads) &&
          spec.attention.some((a) => a.kept.length < a.heads),
        'heads are pruned',
      );
      const stream = spec.attention[0]!.embedDim;
      assert.ok(stream < shape.width, `the stream is cut (${stream})`);
      const mlp = spec.modules.filter((x) => /(mlp\.0|linear1)$/.test(x.path));
      assert.equal(mlp.length, 2);
      assert.ok(
        mlp.every((x) => x.attrs.out_features! < shape.mlp),
        'the MLP widths are cut',
      );
      // ViT's _process_input reshapes by self.hidden_dim; the encoders' views are computed or in the attention.
      assert.deepEqual(spec.views, name.startsWith('vit') ? [{ path: '', before: 64, after: stream }] : []);
      // torch's fused kernels run under no_grad where its own attention is kept, never with the replacement.
      if (name === 'bert-even') assert.equal(r.fused, 2);
      else assert.equal(r.fused, 0);
      for (const a of spec.attention) {
        const [cls, heads, headDim, width] = r.attention[a.path]!;
        assert.deepEqual([heads, headDim, width], [a.kept.length, shape.headDim, stream], a.path);
        // The replacement only where torch's attributes cannot say it.
        assert.equal(
          cls,
          heads * headDim === width ? 'MultiheadAttention' : 'SlimMultiheadAttention',
          a.path,
        );
      }

      const logits = await logitsOf(m(`${name}-slim.onnx`), name);
      const diffs = {
        sliced: maxAbsDiff(r.sliced, logits),
        fused: maxAbsDiff(r.fastPath, logits),
        loaded: maxAbsDiff(r.loaded, logits),
      };
      console.log(
        `# ${name}: heads ${spec.attention.map((a) => `${a.kept.length}/${a.heads}`).join(' ')}, stream ${stream}/${shape.width}; max |torch - onnxruntime| sliced ${diffs.sliced.toExponential(2)}, no_grad ${diffs.fused.toExponential(2)}, loaded ${diffs.loaded.toExponential(2)}; train step ${r.train ?? 'ok'}`,
      );
      for (const [what, d] of Object.entries(diffs)) assert.ok(d <= TOLERANCE, `${what}: ${d}`);
      assert.ok(Math.max(...logits) - Math.min(...logits) > 0.1, 'logits vary');
      assert.ok(maxAbsDiff(original, logits) > 0.01, 'pruning changed the logits');
      assert.equal(r.train, null);
    });
});

/** The module's embedded SPEC, parsed back out of the generated Python text. */
function specOf(pyFile: string): {
  source: { model: string; plan: string };
  params: { name: string; shape: number[]; pruned: number[]; keep: Record<string, number> }[];
  modules: { path: string; kind: string; attrs: Record<string, number> }[];
  keeps: [number, number][][];
  weights?: { file: string; bytes: number; entries: { name: string; shape: number[]; offset: number }[] };
} {
  return specLiteral(fs.readFileSync(pyFile, 'utf8'));
}

/**
 * The SPEC line's literal, checked to be one printable-ASCII double-quoted Python string whose only escapes are
 * a backslash before a backslash or a quote, decoded and parsed as JSON.
 */
function specLiteral(text: string): ReturnType<typeof specOf> {
  const m = /^SPEC = json\.loads\("((?:[^"\\]|\\[\\"])*)"\)$/m.exec(text);
  assert.ok(m, 'SPEC line');
  assert.match(m[1]!, /^[\x20-\x7e]*$/);
  return JSON.parse(m[1]!.replace(/\\([\\"])/g, '$1'));
}

describe('export-torch (no Python needed)', () => {
  let dir = '';
  const m = (f: string): string => path.join(dir, f);
  const prune = async (model: string, out: string, flops: string, plan?: string): Promise<void> => {
    const r = await runCli([
      'prune',
      model,
      '--flops',
      flops,
      '-o',
      out,
      ...(plan ? ['--plan-out', plan] : []),
      '--no-measure-latency',
      '--no-report',
    ]);
    assert.equal(r.code, 0, r.stderr);
  };
  const refused = async (...args: string[]): Promise<string> => {
    const r = await runCli(['export-torch', ...args]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    return r.stderr;
  };
  before(async () => {
    dir = tmpDir('adapruner-export-torch-');
    await prune(fixture('mobilenetv2.onnx'), m('mobilenetv2-slim.onnx'), '0.5', m('mobilenetv2.plan.json'));
    await prune(fixture('densenet.onnx'), m('densenet-slim.onnx'), '0.5', m('densenet.plan.json'));
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("slices every parameter to the pruned file's shape; depthwise convs keep groups = channels", async () => {
    const r = await runCli([
      'export-torch',
      fixture('mobilenetv2.onnx'),
      '--plan',
      m('mobilenetv2.plan.json'),
      '--weights',
      m('mobilenetv2-slim.onnx'),
      '-o',
      m('mnv2_slim.py'),
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const spec = specOf(m('mnv2_slim.py'));
    const dims = (file: string): Map<string, number[]> =>
      new Map(loadModel(file).graph.initializers.map((v) => [v.name, [...v.initializer!.dims]]));
    const pruned = dims(m('mobilenetv2-slim.onnx'));
    const original = dims(fixture('mobilenetv2.onnx'));
    for (const p of spec.params) {
      assert.deepEqual(p.shape, original.get(p.name), p.name);
      assert.deepEqual(p.pruned, pruned.get(p.name), p.name);
      p.shape.forEach((size, axis) => {
        const k = p.keep[String(axis)];
        const count = k === undefined ? size : spec.keeps[k]!.reduce((a, [s, e]) => a + e - s, 0);
        assert.equal(count, p.pruned[axis], `${p.name} axis ${axis}`);
        if (k !== undefined) assert.ok(spec.keeps[k]!.every(([s, e]) => s >= 0 && s < e && e <= size));
      });
    }
    // Every parameter and running statistic of the BN-kept export is covered.
    const stateDict = [...pruned.keys()].filter((n) => /\.(weight|bias|running_(mean|var))$/.test(n));
    assert.deepEqual(spec.params.map((p) => p.name).sort(), stateDict.sort());
    assert.ok(spec.params.filter((p) => Object.keys(p.keep).length).length > 50);
    const depthwise = spec.modules.filter((x) => x.kind === 'conv' && x.attrs.groups! > 1);
    assert.equal(depthwise.length, 7);
    for (const d of depthwise) {
      assert.equal(d.attrs.groups, d.attrs.out_channels, d.path);
      assert.equal(d.attrs.in_channels, d.attrs.out_channels, d.path);
    }
    assert.deepEqual(
      spec.modules.find((x) => x.path === 'classifier.1'),
      {
        path: 'classifier.1',
        kind: 'linear',
        attrs: { out_features: 10, in_features: pruned.get('classifier.1.weight')![1] },
      },
    );
    const bin = fs.readFileSync(m('mnv2_slim.weights.bin'));
    assert.equal(bin.byteLength, spec.weights!.bytes);
    const last = spec.weights!.entries.at(-1)!;
    assert.equal(spec.weights!.bytes, last.offset + 4 * last.shape.reduce((a, b) => a * b, 1));
    assert.deepEqual(JSON.parse(r.stdout).files, [m('mnv2_slim.py'), m('mnv2_slim.weights.bin')]);
  });

  it('refuses bad requests with one line and exit code 2, writing nothing', async () => {
    const densenet = fixture('densenet.onnx');
    assert.match(
      await refused(densenet, '--plan', m('mobilenetv2.plan.json'), '-o', m('x.py')),
      /mobilenetv2\.plan\.json: plan has \d+ groups but the model has \d+/,
    );
    // Weights from another pruning of the same model.
    await prune(densenet, m('densenet-70.onnx'), '0.7');
    assert.match(
      await refused(
        densenet,
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
      await refused(densenet, '--plan', m('plan_copy.py'), '-o', m('plan_copy.py')),
      /plan_copy\.py: would overwrite an input of this run/,
    );
    assert.deepEqual(fs.readFileSync(m('plan_copy.py')), planBytes);
    assert.match(
      await refused(densenet, '--plan', m('densenet.plan.json'), '-o', m('slim.onnx')),
      /must be a Python file ending in \.py/,
    );
    assert.ok(!fs.existsSync(m('x.py')) && !fs.existsSync(m('x.weights.bin')));
  });

  it('refuses a BN-folded export, whose pruned weights have no state_dict names', async () => {
    const folded = fixture('resnet_a-bnfolded.onnx');
    await prune(folded, m('folded.onnx'), '0.5', m('folded.plan.json'));
    assert.match(
      await refused(folded, '--plan', m('folded.plan.json'), '-o', m('folded.py')),
      /the plan prunes initializer 'onnx::Conv_\d+', whose name is not a state_dict key: export the model from torch with BN kept/,
    );
    assert.ok(!fs.existsSync(m('folded.py')));
  });

  it('writes user-given names only as an escaped literal, never into the docstring', async () => {
    for (const [i, hostile] of HOSTILE_NAMES.entries()) {
      const model = m(`${hostile}.onnx`);
      fs.copyFileSync(fixture('mobilenetv2.onnx'), model);
      const out = m(`hostile${i}.py`);
      const r = await runCli(['export-torch', model, '--plan', m('mobilenetv2.plan.json'), '-o', out]);
      assert.equal(r.code, 0, r.stderr);
      const text = fs.readFileSync(out, 'utf8');
      assert.match(text, /^[\x09\x0a\x20-\x7e]*$/, 'plain ASCII');
      // The docstring is fixed text; the only line naming the model is the SPEC literal.
      const lines = text
        .split('\n')
        .filter((l) => l.includes('pwned') || l.includes('BOGUS') || l.includes('.onnx'));
      assert.deepEqual(
        lines.map((l) => l.slice(0, 20)),
        ['SPEC = json.loads("{'],
      );
      assert.equal(specLiteral(text).source.model, `${hostile}.onnx`);
    }
  });

  it('ViT: the packed in_proj_weight is sliced by the kept heads, the stream axis of the class token too', async () => {
    const vit = fixture('transformers/vit.onnx');
    const pruned = await runCli([
      'prune',
      vit,
      '--flops',
      '0.4',
      '--round-to',
      '1',
      '-o',
      m('vit-slim.onnx'),
      '--plan-out',
      m('vit.plan.json'),
      '--no-measure-latency',
      '--no-report',
    ]);
    assert.equal(pruned.code, 0, pruned.stderr);
    const r = await runCli([
      'export-torch',
      vit,
      '--plan',
      m('vit.plan.json'),
      '--weights',
      m('vit-slim.onnx'),
      '-o',
      m('vit_slim.py'),
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const spec = specOf(m('vit_slim.py')) as ReturnType<typeof specOf> & {
      attention: { path: string; heads: number; kept: number[]; headDim: number; embedDim: number }[];
      views: { path: string; before: number; after: number }[];
    };
    const indices = (k: number): number[] =>
      spec.keeps[k]!.flatMap(([a, b]) => [...Array(b - a).keys()].map((i) => a + i));
    const param = (name: string) => spec.params.find((p) => p.name === name)!;
    const stream = spec.attention[0]!.embedDim;
    assert.ok(stream < 64);
    assert.ok(!spec.params.some((p) => p.name.endsWith('self_attention.weight')));
    for (const a of spec.attention) {
      assert.equal(a.heads, 4);
      assert.equal(a.headDim, 16);
      assert.equal(a.embedDim, stream);
      const w = param(`${a.path}.in_proj_weight`);
      assert.deepEqual(w.shape, [192, 64]);
      assert.deepEqual(w.pruned, [3 * 16 * a.kept.length, stream]);
      // q, k and v rows of exactly the kept heads; out_proj's input columns of the same heads.
      const rows = [0, 1, 2].flatMap((s) =>
        a.kept.flatMap((h) => [...Array(16).keys()].map((j) => s * 64 + h * 16 + j)),
      );
      assert.deepEqual(indices(w.keep['0']!), rows);
      assert.deepEqual(
        indices(param(`${a.path}.out_proj.weight`).keep['1']!),
        rows.slice(0, 16 * a.kept.length),
      );
    }
    assert.ok(spec.attention.some((a) => a.kept.length < 4));
    for (const name of ['class_token', 'encoder.pos_embedding']) {
      const p = param(name);
      assert.equal(p.pruned[2], stream, name);
      assert.deepEqual(indices(p.keep['2']!), indices(param('conv_proj.weight').keep['0']!), name);
    }
    assert.deepEqual(spec.views, [{ path: '', before: 64, after: stream }]);
    const entry = spec.weights!.entries.find((e) =>
      e.name.endsWith('encoder_layer_0.self_attention.in_proj_weight'),
    )!;
    assert.deepEqual(entry.shape, param(entry.name).pruned);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.attention, 2);
    assert.equal(summary.replacedAttention, 2);
  });

  it('refuses an attention it cannot hand off (Swin): one line, exit 2, nothing written', async () => {
    const swin = fixture('transformers/swin.onnx');
    await prune(swin, m('swin-slim.onnx'), '0.5', m('swin.plan.json'));
    assert.match(
      await refused(swin, '--plan', m('swin.plan.json'), '-o', m('swin.py')),
      /swin\.onnx: the plan prunes 'onnx::MatMul_\d+', one of 2 MatMul weights that the forward of 'features\.\d\.\d\.attn' applies itself \(F\.linear, as Swin's attention does\): export-torch cannot tell which of its parameters each is$/m,
    );
    assert.ok(!fs.existsSync(m('swin.py')));
  });

  it('ShuffleNetV2: an unequal split of a chunk() is refused; --torch-compatible keeps the parts equal', async () => {
    const model = fixture('families/shufflenetv2_tv.onnx');
    const prune2 = (...extra: string[]) =>
      runCli([
        'prune',
        model,
        '--flops',
        '0.5',
        '--round-to',
        '2',
        ...extra,
        '--no-measure-latency',
        '--no-report',
      ]);
    assert.equal((await prune2('-o', m('shuffle.onnx'), '--plan-out', m('shuffle.plan.json'))).code, 0);
    assert.match(
      await refused(model, '--plan', m('shuffle.plan.json'), '-o', m('shuffle.py')),
      /shuffle\.plan\.json: '.*Slice.*' cuts 2 equal parts of \d+ channels, the plan keeps (\d+) \+ (?!\1)\d+: torch's chunk\(\) cuts equal parts.*--torch-compatible/,
    );
    assert.ok(!fs.existsSync(m('shuffle.py')));
    const again = await prune2('--plan-in', m('shuffle.plan.json'), '--torch-compatible', '-o', m('x.onnx'));
    assert.equal(again.code, 2);
    assert.match(again.stderr, /the plan is not torch-compatible/);
    const tc = await prune2(
      '--torch-compatible',
      '-o',
      m('shuffle-tc.onnx'),
      '--plan-out',
      m('shuffle-tc.plan.json'),
    );
    assert.equal(tc.code, 0, tc.stderr);
    const record = JSON.parse(loadModel(m('shuffle-tc.onnx')).getMetadata('adapruner.pruning')!);
    const ratio = record.pruned.macs / record.original.macs;
    assert.ok(ratio <= 0.5 && ratio > 0.45, `MACs ratio ${ratio}`);
    const r = await runCli([
      'export-torch',
      model,
      '--plan',
      m('shuffle-tc.plan.json'),
      '-o',
      m('shuffle_tc.py'),
    ]);
    assert.equal(r.code, 0, r.stderr);
  });
});
