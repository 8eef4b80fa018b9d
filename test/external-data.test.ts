import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { UserError } from '../src/errors.js';
import {
  DataType,
  Tensor,
  Value,
  loadModel,
  saveModel,
  serializeModel,
  tensorType,
} from '../src/ir/index.js';
import { ModelProtoType } from '../src/ir/onnx-schema.js';
import { needsExternalData } from '../src/ir/save.js';
import { FIXTURES, tmpDir } from './helpers.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- protobuf messages are plain objects */
type Msg = Record<string, any>;

const FIXTURE = path.join(FIXTURES, 'resnet_b.onnx');

async function run(modelPath: string): Promise<Buffer> {
  const session = await ort.InferenceSession.create(modelPath);
  try {
    const input = new Float32Array(3 * 32 * 32).map((_, i) => Math.sin(i));
    const out = await session.run({
      [session.inputNames[0]!]: new ort.Tensor('float32', input, [1, 3, 32, 32]),
    });
    const d = out[session.outputNames[0]!]!.data as Float32Array;
    return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  } finally {
    await session.release();
  }
}

const externalEntries = (m: Msg): Msg[] => m.graph.initializer.filter((t: Msg) => t.data_location === 1);

test('saveModel with externalData writes a loadable pair; data, onnxruntime outputs and an inline re-save are identical', async () => {
  const dir = tmpDir();
  const original = loadModel(FIXTURE);
  const out = path.join(dir, 'model.onnx');
  saveModel(original, out, { externalData: { location: 'weights.bin' } });
  assert.deepEqual(fs.readdirSync(dir).sort(), ['model.onnx', 'weights.bin']);

  const proto = ModelProtoType.toObject(ModelProtoType.decode(fs.readFileSync(out)), {
    longs: String,
  }) as Msg;
  const external = externalEntries(proto);
  const large = original.graph.initializers.filter((v) => v.initializer!.byteLength >= 1024);
  assert.equal(
    external.length,
    large.length,
    'tensors of 1 KiB or more go to the data file, smaller stay inline',
  );
  assert.ok(large.length > 0 && large.length < original.graph.initializers.length);
  for (const t of external) {
    const entries = new Map<string, string>(t.external_data.map((e: Msg) => [e.key, e.value]));
    assert.equal(entries.get('location'), 'weights.bin');
    assert.equal(Number(entries.get('offset')) % 4096, 0, 'offsets are page aligned');
    assert.equal(t.raw_data, undefined);
  }

  const reloaded = loadModel(out);
  for (const v of original.graph.initializers) {
    const t = reloaded.graph.initializers.find((w) => w.name === v.name)!.initializer!;
    assert.ok(Buffer.from(t.rawBytes()).equals(Buffer.from(v.initializer!.rawBytes())), v.name);
  }
  assert.ok((await run(out)).equals(await run(FIXTURE)), 'onnxruntime reads the external data the same');

  // Inlining again gives back the original file byte for byte.
  const inline = path.join(dir, 'inline.onnx');
  saveModel(reloaded, inline);
  assert.ok(fs.readFileSync(inline).equals(fs.readFileSync(FIXTURE)));
  assert.ok(Buffer.from(serializeModel(reloaded)).equals(fs.readFileSync(FIXTURE)));
});

test('a custom threshold moves every tensor of at least that many bytes, and a data file in a subfolder works', async () => {
  const dir = tmpDir();
  fs.mkdirSync(path.join(dir, 'data'));
  const out = path.join(dir, 'm.onnx');
  const model = loadModel(FIXTURE);
  saveModel(model, out, { externalData: { location: 'data/w.bin', threshold: 1 } });
  const proto = ModelProtoType.decode(fs.readFileSync(out)) as unknown as Msg;
  const nonEmpty = model.graph.initializers.filter((v) => v.initializer!.byteLength > 0).length;
  assert.equal(externalEntries(proto).length, nonEmpty);
  assert.ok((await run(out)).equals(await run(FIXTURE)));
});

test('the automatic switch to external data triggers only past the 2 GiB protobuf limit', () => {
  const model = loadModel(FIXTURE);
  const bytes = model.graph.initializers.reduce((n, v) => n + v.initializer!.byteLength, 0);
  assert.equal(needsExternalData(model), false);
  assert.equal(needsExternalData(model, bytes), false);
  assert.equal(needsExternalData(model, bytes - 1), true);
  // A tensor claiming 2 GiB + 4 bytes (never materialised) tips the default limit.
  const huge = Tensor.fromProto({
    name: 'huge',
    dims: [2 ** 29 + 1],
    data_type: DataType.FLOAT,
    data_location: 1,
    external_data: [{ key: 'location', value: 'huge.bin' }],
  });
  model.graph.addInitializer(new Value('huge', tensorType(DataType.FLOAT, [2 ** 29 + 1])), huge);
  assert.equal(needsExternalData(model), true);
});

/** The external-data fixture model with its first external tensor's location replaced. */
function withLocation(location: string): { bytes: Uint8Array; name: string } {
  const dir = tmpDir();
  const out = path.join(dir, 'm.onnx');
  saveModel(loadModel(FIXTURE), out, { externalData: { location: 'weights.bin' } });
  const proto = ModelProtoType.decode(fs.readFileSync(out)) as unknown as Msg;
  const t = externalEntries(proto)[0]!;
  for (const e of t.external_data) if (e.key === 'location') e.value = location;
  return { bytes: ModelProtoType.encode(proto).finish(), name: t.name };
}

interface Layout {
  modelDir: string;
  outside: string;
  outsideFile: string;
}

/** A model folder beside an `outside` folder holding a data file the model must never reach. */
function layout(): Layout {
  const root = tmpDir();
  const modelDir = path.join(root, 'model');
  const outside = path.join(root, 'outside');
  fs.mkdirSync(modelDir);
  fs.mkdirSync(outside);
  const outsideFile = path.join(outside, 'secret.bin');
  fs.writeFileSync(outsideFile, Buffer.alloc(1 << 20, 7));
  return { modelDir, outside, outsideFile };
}

const TRAVERSALS: {
  what: string;
  location: (l: Layout) => string;
  prepare?: (l: Layout) => void;
  message: RegExp;
}[] = [
  { what: 'an absolute location', location: (l) => l.outsideFile, message: /is absolute/ },
  { what: 'a Windows drive path', location: () => 'C:/secret.bin', message: /is absolute/ },
  { what: "a '..' component", location: () => '../outside/secret.bin', message: /contains '\.\.'/ },
  {
    what: "a '..' hidden in the middle",
    location: () => 'a/../../outside/secret.bin',
    message: /contains '\.\.'/,
  },
  { what: 'a backslash ..', location: () => '..\\outside\\secret.bin', message: /contains '\.\.'/ },
  {
    what: 'a symbolic link to a file elsewhere',
    location: () => 'link.bin',
    prepare: (l) => fs.symlinkSync(l.outsideFile, path.join(l.modelDir, 'link.bin')),
    message: /symbolic link/,
  },
  {
    what: 'a symbolic link to a file in the same folder',
    location: () => 'alias.bin',
    prepare: (l) => {
      fs.writeFileSync(path.join(l.modelDir, 'real.bin'), 'x');
      fs.symlinkSync('real.bin', path.join(l.modelDir, 'alias.bin'));
    },
    message: /symbolic link/,
  },
  {
    what: 'a symlinked directory component',
    location: () => 'dir/secret.bin',
    prepare: (l) => fs.symlinkSync(l.outside, path.join(l.modelDir, 'dir')),
    message: /symbolic link/,
  },
  {
    what: 'a hard link to a file elsewhere',
    location: () => 'hard.bin',
    prepare: (l) => fs.linkSync(l.outsideFile, path.join(l.modelDir, 'hard.bin')),
    message: /hard link/,
  },
  { what: 'the model folder itself', location: () => '.', message: /resolves outside the model's folder/ },
  { what: 'an empty location', location: () => '', message: /location is empty/ },
  { what: 'a NUL byte', location: () => 'w.bin\0.txt', message: /NUL byte/ },
];

for (const c of TRAVERSALS) {
  test(`reading refuses ${c.what}`, () => {
    const l = layout();
    c.prepare?.(l);
    const { bytes, name } = withLocation(c.location(l));
    const file = path.join(l.modelDir, 'm.onnx');
    fs.writeFileSync(file, bytes);
    assert.throws(
      () => loadModel(file),
      (e: unknown) =>
        e instanceof UserError &&
        c.message.test(e.message) &&
        e.message.startsWith(file) &&
        !e.message.includes('\n'),
    );
    assert.ok(name);
  });

  test(`writing refuses ${c.what}, touching nothing`, () => {
    const l = layout();
    c.prepare?.(l);
    const before = fs.readdirSync(l.modelDir).sort();
    const out = path.join(l.modelDir, 'out.onnx');
    assert.throws(
      () => saveModel(loadModel(FIXTURE), out, { externalData: { location: c.location(l) } }),
      (e: unknown) => e instanceof UserError && c.message.test(e.message) && e.message.startsWith(out),
    );
    assert.deepEqual(fs.readdirSync(l.modelDir).sort(), before, 'no model, data or temp file was written');
    assert.ok(
      fs.readFileSync(l.outsideFile).equals(Buffer.alloc(1 << 20, 7)),
      'the outside file is unchanged',
    );
  });
}

test('a link swapped in after loading is refused when the data is finally read', () => {
  const l = layout();
  const out = path.join(l.modelDir, 'm.onnx');
  saveModel(loadModel(FIXTURE), out, { externalData: { location: 'weights.bin' } });
  const model = loadModel(out);
  fs.rmSync(path.join(l.modelDir, 'weights.bin'));
  fs.symlinkSync(l.outsideFile, path.join(l.modelDir, 'weights.bin'));
  const t = model.graph.initializers.find((v) => v.initializer!.isExternal)!.initializer!;
  assert.throws(() => t.data, /symbolic link/);
});

test('offsets and lengths that do not fit are reported when the data is read', () => {
  const l = layout();
  const base = withLocation('weights.bin');
  const file = path.join(l.modelDir, 'm.onnx');
  const proto = ModelProtoType.decode(base.bytes) as unknown as Msg;
  const [first, second] = externalEntries(proto);
  for (const e of first.external_data) if (e.key === 'offset') e.value = String(1e9);
  for (const e of second.external_data) if (e.key === 'length') e.value = '3';
  fs.writeFileSync(file, ModelProtoType.encode(proto).finish());
  fs.writeFileSync(path.join(l.modelDir, 'weights.bin'), Buffer.alloc(1 << 20));
  const model = loadModel(file);
  const tensor = (name: string): Tensor =>
    model.graph.initializers.find((v) => v.name === name)!.initializer!;
  assert.throws(() => tensor(first.name).data, /too short for offset 1000000000/);
  assert.throws(() => tensor(second.name).data, /external length 3 does not match/);
  for (const e of first.external_data) if (e.key === 'offset') e.value = '-5';
  fs.writeFileSync(file, ModelProtoType.encode(proto).finish());
  assert.throws(
    () => loadModel(file),
    (e: unknown) => e instanceof UserError && /invalid external offset '-5'/.test(e.message),
  );
});

// ---- a saved file is written whole or not at all ----

const listing = (dir: string): string[] => fs.readdirSync(dir).sort();

test('saving over the input model is refused, however the path is spelled', () => {
  const dir = tmpDir();
  const input = path.join(dir, 'in.onnx');
  fs.copyFileSync(FIXTURE, input);
  fs.mkdirSync(path.join(dir, 'sub'));
  fs.symlinkSync(input, path.join(dir, 'sym.onnx'));
  fs.linkSync(input, path.join(dir, 'hard.onnx'));
  const model = loadModel(input);
  for (const target of [
    input,
    path.join(dir, 'sub', '..', 'in.onnx'),
    path.join(dir, 'sym.onnx'),
    path.join(dir, 'hard.onnx'),
  ]) {
    assert.throws(
      () => saveModel(model, target),
      (e: unknown) => e instanceof UserError && /refusing to overwrite the input model/.test(e.message),
      target,
    );
  }
  assert.ok(fs.readFileSync(input).equals(fs.readFileSync(FIXTURE)));
  assert.deepEqual(listing(dir), ['hard.onnx', 'in.onnx', 'sub', 'sym.onnx']);
});

test('a save that fails while writing leaves the previous file and no temporary file', (t) => {
  const dir = tmpDir();
  const out = path.join(dir, 'out.onnx');
  fs.writeFileSync(out, 'previous');
  const model = loadModel(FIXTURE);
  const realWrite = fs.writeSync;
  let calls = 0;
  let partial: string[] = [];
  // The disk fills up after the first 100 bytes of the temporary file.
  t.mock.method(fs, 'writeSync', (fd: number, buffer: Uint8Array, offset: number) => {
    if (calls++ > 0) {
      partial = listing(dir);
      throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    }
    return realWrite(fd, buffer, offset, Math.min(100, buffer.length - offset));
  });
  assert.throws(
    () => saveModel(model, out),
    (e: unknown) => e instanceof UserError && /ENOSPC/.test(e.message) && e.message.startsWith(out),
  );
  t.mock.restoreAll();
  assert.equal(partial.length, 2, `a partial temporary file existed when the write failed: ${partial}`);
  assert.deepEqual(listing(dir), ['out.onnx']);
  assert.equal(fs.readFileSync(out, 'utf8'), 'previous');
});

test('a save whose final rename fails removes its temporary files and restores the previous data file', () => {
  const dir = tmpDir();
  const out = path.join(dir, 'out.onnx');
  // A non-empty directory where the model should go makes the last step (rename into place) fail.
  fs.mkdirSync(out);
  fs.writeFileSync(path.join(out, 'keep'), 'x');
  fs.writeFileSync(path.join(dir, 'w.bin'), 'old data');
  assert.throws(
    () => saveModel(loadModel(FIXTURE), out, { externalData: { location: 'w.bin' } }),
    (e: unknown) => e instanceof UserError && /cannot write: (EISDIR|ENOTEMPTY|EEXIST)/.test(e.message),
  );
  assert.deepEqual(listing(dir), ['out.onnx', 'w.bin']);
  assert.equal(fs.readFileSync(path.join(dir, 'w.bin'), 'utf8'), 'old data');
  assert.throws(
    () => saveModel(loadModel(FIXTURE), path.join(dir, 'x.onnx'), { externalData: { location: 'x.onnx' } }),
    /names the model file itself/,
  );
  assert.deepEqual(listing(dir), ['out.onnx', 'w.bin']);
});

test(
  'a read-only output folder gives a clear error and no file',
  { skip: process.getuid?.() === 0 ? 'running as root: permissions do not apply' : false },
  () => {
    const dir = tmpDir();
    fs.chmodSync(dir, 0o555);
    try {
      assert.throws(
        () => saveModel(loadModel(FIXTURE), path.join(dir, 'out.onnx')),
        (e: unknown) => e instanceof UserError && /EACCES/.test(e.message),
      );
      assert.deepEqual(listing(dir), []);
    } finally {
      fs.chmodSync(dir, 0o755);
    }
  },
);
