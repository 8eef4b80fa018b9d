/**
 * Generated bad and hostile CLI runs (test/adversarial.test.ts): every case sets up its files in a fresh
 * folder and names the command line; each must end with exit code 2 and one line on stderr, leaving every
 * file it did not own untouched. The classes follow issue 12: outputs aliasing inputs, write failures,
 * invalid models, numeric options, yargs errors, non-regular files, external data, damaged checkpoints,
 * terminal injection and hostile data sets.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { ModelProtoType } from '../src/ir/onnx-schema.js';
import { FIXTURES } from './helpers.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- protobuf messages are plain objects */
type Msg = Record<string, any>;

/** The folders a case works in; `root` holds everything the case may see. */
export interface CaseDirs {
  root: string;
  /** The case's own inputs: a copy of the model (`m.onnx`) and its preprocessing spec. */
  in: string;
  /** An empty folder for outputs. */
  out: string;
  model: string;
  /** A tiny image-folder data set (10 classes x 2 grey 28x28 PNGs), shared by all cases (read-only). */
  data: string;
  /** The same data set as a .tar archive. */
  dataTar: string;
  /** A real checkpoint of `m.onnx` after 1 of 2 epochs (args: CHECKPOINT_ARGS). */
  checkpoint: string;
}

export interface AdversarialCase {
  klass: string;
  name: string;
  /** Creates what the case needs and returns the command line. */
  setup(d: CaseDirs): string[] | Promise<string[]>;
  /** Exit 0 is acceptable too (a hostile but valid input); outputs may then be written under `out`. */
  mayPass?: boolean;
  /** Run in a child process with a timeout: the case once hung the process (FIFOs, endless loops). */
  isolate?: boolean;
  /** Exit 0 is required (a case that was refused wrongly). */
  mustPass?: boolean;
  /** Text stderr must not hold (the content of a file that failed to parse). */
  forbid?: RegExp;
  /** Extra environment (for cache cases). */
  env?: (d: CaseDirs) => Record<string, string>;
}

export const BASE_MODEL = path.join(FIXTURES, 'example', 'fmnist-cnn.onnx');
const BASE_SPEC = path.join(FIXTURES, 'example', 'fmnist-cnn.preprocess.json');

/** Training arguments small enough for a case: 20 images, batches of 10, one epoch. */
export const TRAIN = ['--batch', '10', '--epochs', '1', '--no-augment'];
export const CHECKPOINT_ARGS = ['--batch', '10', '--epochs', '2', '--no-augment'];

/** Creates the shared base: the data set folder and tar. */
export async function makeBase(base: string): Promise<{ data: string; dataTar: string }> {
  const data = path.join(base, 'data');
  for (let c = 0; c < 10; c++) {
    const folder = path.join(data, `class${c}`);
    fs.mkdirSync(folder, { recursive: true });
    for (let i = 0; i < 2; i++) {
      const pixels = Buffer.alloc(28 * 28);
      for (let k = 0; k < pixels.length; k++) pixels[k] = (k * (c + 1) + i * 31) % 256;
      await sharp(pixels, { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toFile(path.join(folder, `${i}.png`));
    }
  }
  const dataTar = path.join(base, 'data.tar');
  execFileSync('tar', ['-cf', dataTar, '-C', base, 'data']);
  return { data, dataTar };
}

export function copyModelInto(dir: string): string {
  const model = path.join(dir, 'm.onnx');
  fs.copyFileSync(BASE_MODEL, model);
  fs.copyFileSync(BASE_SPEC, path.join(dir, 'm.preprocess.json'));
  return model;
}

// ---- models ----

export function decodeProto(bytes: Uint8Array): Msg {
  return ModelProtoType.toObject(ModelProtoType.decode(bytes), { longs: Number, bytes: Buffer }) as Msg;
}
export function encodeProto(m: Msg): Uint8Array {
  return ModelProtoType.encode(ModelProtoType.fromObject(m)).finish();
}

/** Writes a variant of the base model made by `edit` over `file` (and its spec beside it). */
function variant(file: string, edit: (g: Msg, m: Msg) => void): void {
  const m = decodeProto(fs.readFileSync(BASE_MODEL));
  edit(m.graph, m);
  fs.writeFileSync(file, encodeProto(m));
}

/** A float tensor's raw data as a copy to edit. */
function floats(t: Msg): Float32Array {
  return new Float32Array(
    t.raw_data.buffer.slice(t.raw_data.byteOffset, t.raw_data.byteOffset + t.raw_data.length),
  );
}

function renameValue(g: Msg, from: string, to: string): void {
  for (const n of g.node) {
    n.input = n.input.map((x: string) => (x === from ? to : x));
    n.output = n.output.map((x: string) => (x === from ? to : x));
  }
  for (const list of [g.input, g.output, g.value_info ?? [], g.initializer])
    for (const v of list) if (v.name === from) v.name = to;
}

const ESC = '\x1b]0;owned\x07\x1b[2J\r\0';

/** Models that are well-formed protobuf but wrong (or hostile) in one way each. */
export const BAD_MODELS: { name: string; edit: (g: Msg, m: Msg, dir: string) => void; valid?: boolean }[] = [
  {
    name: 'graph cycle',
    edit: (g) => {
      g.node[0].input[0] = g.node.at(-1).output[0];
    },
  },
  {
    name: 'cycle through nodes named with escape sequences',
    edit: (g) => {
      g.node[0].input[0] = g.node.at(-1).output[0];
      g.node.forEach((n: Msg, i: number) => (n.name = `${ESC}${i}`));
    },
  },
  {
    name: 'string weights',
    edit: (g) => {
      const t = g.initializer[0];
      const n = (t.dims as number[]).reduce((a, b) => a * b, 1);
      t.data_type = 8;
      delete t.raw_data;
      t.string_data = Array.from({ length: n }, () => Buffer.from('x'));
    },
  },
  {
    name: 'float16 weights into a float conv',
    edit: (g) => {
      const t = g.initializer[0];
      t.data_type = 10;
      t.raw_data = t.raw_data.subarray(0, t.raw_data.length / 2);
    },
  },
  { name: 'input named __proto__', edit: (g) => renameValue(g, 'input', '__proto__'), valid: true },
  { name: 'output named __proto__', edit: (g) => renameValue(g, 'logits', '__proto__'), valid: true },
  {
    name: 'values named constructor/toString',
    edit: (g) => {
      renameValue(g, g.node[0].output[0], 'constructor');
      renameValue(g, g.node[1].output[0], 'toString');
      g.node[2].name = '__proto__';
    },
    valid: true,
  },
  {
    name: 'node and value names with control characters',
    edit: (g) => {
      renameValue(g, g.node[0].output[0], `a${ESC}`);
      g.node.forEach((n: Msg, i: number) => (n.name = `${ESC}n${i}`));
    },
    valid: true,
  },
  {
    name: 'node and value names with escape sequences and CR (no NUL)',
    edit: (g) => {
      renameValue(g, g.node[0].output[0], `a${ESC.replace('\0', '')}`);
      g.node.forEach((n: Msg, i: number) => (n.name = `${ESC.replace('\0', '')}n${i}`));
    },
    valid: true,
  },
  {
    name: 'unknown operator',
    edit: (g) => {
      g.node[2].op_type = 'NoSuchOp';
    },
  },
  {
    name: 'operator from an unknown domain',
    edit: (g) => {
      g.node[2].domain = 'com.example.evil';
    },
  },
  {
    name: 'input of an undefined value named with escapes',
    edit: (g) => {
      g.node[1].input[0] = `missing${ESC}`;
    },
  },
  {
    name: 'value produced twice',
    edit: (g) => {
      g.node[1].output[0] = g.node[0].output[0];
    },
  },
  {
    name: 'int64 data input',
    edit: (g) => {
      g.input[0].type.tensor_type.elem_type = 7;
    },
  },
  {
    name: 'input with 3 channels into a 1-channel conv',
    edit: (g) => {
      g.input[0].type.tensor_type.shape.dim[1] = { dim_value: 3 };
    },
  },
  {
    name: 'conv weight reshaped to rank 2',
    edit: (g) => {
      const w = g.initializer.find((t: Msg) => t.dims.length === 4);
      w.dims = [w.dims[0], w.dims.slice(1).reduce((a: number, b: number) => a * b, 1)];
    },
  },
  {
    name: 'conv kernel_shape attribute as a string',
    edit: (g) => {
      const conv = g.node.find((n: Msg) => n.op_type === 'Conv');
      conv.attribute = [...(conv.attribute ?? []), { name: 'strides', type: 3, s: Buffer.from('1,1') }];
    },
  },
  {
    name: 'conv with zero strides',
    edit: (g) => {
      const conv = g.node.find((n: Msg) => n.op_type === 'Conv');
      conv.attribute = (conv.attribute ?? []).filter((a: Msg) => a.name !== 'strides');
      conv.attribute.push({ name: 'strides', type: 7, ints: [0, 0] });
    },
  },
  {
    name: 'no graph outputs',
    edit: (g) => {
      g.output = [];
    },
  },
  {
    name: 'opset 999',
    edit: (_g, m) => {
      m.opset_import = [{ version: 999 }];
    },
  },
  {
    name: 'NaN weights',
    edit: (g) => {
      const w = g.initializer.find((t: Msg) => t.dims.length === 4);
      const f = new Float32Array(
        w.raw_data.buffer.slice(w.raw_data.byteOffset, w.raw_data.byteOffset + w.raw_data.length),
      );
      f[0] = NaN;
      w.raw_data = Buffer.from(f.buffer);
    },
  },
  {
    name: 'infinite weights',
    edit: (g) => {
      const w = g.initializer.find((t: Msg) => t.dims.length === 4);
      const f = floats(w);
      f[1] = -Infinity;
      w.raw_data = Buffer.from(f.buffer);
    },
  },
  {
    name: 'negative BatchNormalization variance',
    edit: (g) => {
      const bn = g.node.find((n: Msg) => n.op_type === 'BatchNormalization');
      const v = g.initializer.find((t: Msg) => t.name === bn.input[4]);
      const f = floats(v);
      f[0] = -1;
      v.raw_data = Buffer.from(f.buffer);
    },
  },
  {
    name: 'initializer defined twice (the second all zeros)',
    edit: (g) => {
      const w = g.initializer.find((t: Msg) => t.dims.length === 4);
      g.initializer.push({ ...w, raw_data: Buffer.alloc(w.raw_data.length) });
    },
  },
  {
    name: 'value_info describing one value twice',
    edit: (g) => {
      const name = g.node[0].output[0];
      g.value_info = [
        { name, type: { tensor_type: { elem_type: 1 } } },
        { name, type: { tensor_type: { elem_type: 7 } } },
      ];
    },
  },
  {
    name: 'conv group attribute as a string',
    edit: (g) => {
      const conv = g.node.find((n: Msg) => n.op_type === 'Conv');
      conv.attribute = (conv.attribute ?? []).filter((a: Msg) => a.name !== 'group');
      conv.attribute.push({ name: 'group', type: 3, s: Buffer.from('1') });
    },
  },
  {
    name: 'conv group attribute as a float',
    edit: (g) => {
      const conv = g.node.find((n: Msg) => n.op_type === 'Conv');
      conv.attribute = (conv.attribute ?? []).filter((a: Msg) => a.name !== 'group');
      conv.attribute.push({ name: 'group', type: 1, f: 1 });
    },
  },
  {
    name: 'conv group not matching its channels',
    edit: (g) => {
      const conv = g.node.find((n: Msg) => n.op_type === 'Conv');
      conv.attribute = (conv.attribute ?? []).filter((a: Msg) => a.name !== 'group');
      conv.attribute.push({ name: 'group', type: 2, i: 3 });
    },
  },
  {
    name: 'sparse initializer with an absolute external location',
    edit: (g) => {
      g.sparse_initializer = [
        {
          values: {
            name: 'sp',
            dims: [1],
            data_type: 1,
            data_location: 1,
            external_data: [{ key: 'location', value: '/etc/passwd' }],
          },
          indices: { name: 'sp_i', dims: [1, 1], data_type: 7, int64_data: [0] },
          dims: [4],
        },
      ];
    },
  },
  {
    name: 'sparse initializer with a .. external location',
    edit: (g) => {
      g.sparse_initializer = [
        {
          values: {
            name: 'sp',
            dims: [1],
            data_type: 1,
            data_location: 1,
            external_data: [{ key: 'location', value: '../../secret.bin' }],
          },
          indices: { name: 'sp_i', dims: [1, 1], data_type: 7, int64_data: [0] },
          dims: [4],
        },
      ];
    },
  },
];

/** The base model with its largest initializer stored externally in `w.bin` (via `edit` of the file). */
function externalModel(dir: string, editEntry?: (e: Msg[], dataFile: string) => void): string {
  const file = path.join(dir, 'ext.onnx');
  const m = decodeProto(fs.readFileSync(BASE_MODEL));
  const w = [...m.graph.initializer].sort((a: Msg, b: Msg) => b.raw_data.length - a.raw_data.length)[0];
  const dataFile = path.join(dir, 'w.bin');
  fs.writeFileSync(dataFile, w.raw_data);
  w.external_data = [
    { key: 'location', value: 'w.bin' },
    { key: 'offset', value: '0' },
    { key: 'length', value: String(w.raw_data.length) },
  ];
  w.data_location = 1;
  delete w.raw_data;
  editEntry?.(w.external_data, dataFile);
  fs.writeFileSync(file, encodeProto(m));
  fs.copyFileSync(BASE_SPEC, path.join(dir, 'ext.preprocess.json'));
  return file;
}

// ---- command templates: what each command runs with valid arguments around one bad part ----

type Cmd = (d: CaseDirs, model: string) => string[];
const COMMANDS: Record<string, Cmd> = {
  prune: (d, m) => ['prune', m, '--flops', '0.5', '-o', path.join(d.out, 'p.onnx')],
  finetune: (d, m) => ['finetune', m, '--data', d.data, ...TRAIN, '-o', path.join(d.out, 'f.onnx')],
  eval: (d, m) => ['eval', m, '--data', d.data],
  bench: (d, m) => ['bench', m, '--runs', '2', '--warmup', '0'],
  recalibrate: (d, m) => [
    'recalibrate',
    m,
    '--data',
    d.data,
    '--batches',
    '1',
    '--batch',
    '10',
    '-o',
    path.join(d.out, 'r.onnx'),
  ],
};

function fifo(file: string): string {
  execFileSync('mkfifo', [file]);
  return file;
}

export function generateCases(): AdversarialCase[] {
  const cases: AdversarialCase[] = [];
  const add = (klass: string, name: string, c: Omit<AdversarialCase, 'klass' | 'name'>): void => {
    cases.push({ klass, name, ...c });
  };

  // 1. Outputs that are inputs, however spelled.
  const spellings: [string, (d: CaseDirs, file: string) => string][] = [
    ['same path', (_d, f) => f],
    ['./ spelling', (_d, f) => `${path.dirname(f)}/./${path.basename(f)}`],
    ['dir/.. spelling', (d, f) => path.join(d.out, '..', path.relative(d.root, f))],
    [
      'symlink',
      (d, f) => {
        const l = path.join(d.out, 'link.onnx');
        fs.symlinkSync(f, l);
        return l;
      },
    ],
    [
      'hard link',
      (d, f) => {
        const l = path.join(d.out, 'hard.onnx');
        fs.linkSync(f, l);
        return l;
      },
    ],
  ];
  for (const [spelling, alias] of spellings) {
    add('output is an input', `prune -o MODEL (${spelling})`, {
      setup: (d) => ['prune', d.model, '--flops', '0.5', '-o', alias(d, d.model)],
    });
    add('output is an input', `finetune -o MODEL (${spelling})`, {
      setup: (d) => ['finetune', d.model, '--data', d.data, ...TRAIN, '-o', alias(d, d.model)],
    });
    add('output is an input', `recalibrate -o MODEL (${spelling})`, {
      setup: (d) => [
        'recalibrate',
        d.model,
        '--data',
        d.data,
        '--batches',
        '1',
        '--batch',
        '10',
        '-o',
        alias(d, d.model),
      ],
    });
    add('output is an input', `prune --dry-run --plan-out MODEL (${spelling})`, {
      setup: (d) => ['prune', d.model, '--flops', '0.5', '--dry-run', '--plan-out', alias(d, d.model)],
    });
    add('output is an input', `finetune --checkpoint MODEL (${spelling})`, {
      setup: (d) => [
        'finetune',
        d.model,
        '--data',
        d.data,
        ...TRAIN,
        '-o',
        path.join(d.out, 'f.onnx'),
        '--checkpoint',
        alias(d, d.model),
      ],
    });
  }
  add('output is an input', 'finetune --teacher T -o T', {
    setup: (d) => {
      const t = path.join(d.in, 't.onnx');
      fs.copyFileSync(d.model, t);
      return ['finetune', d.model, '--data', d.data, ...TRAIN, '--teacher', t, '-o', t];
    },
  });
  add('output is an input', 'finetune --teacher T -o hard link of T', {
    setup: (d) => {
      const t = path.join(d.in, 't.onnx');
      fs.copyFileSync(d.model, t);
      fs.linkSync(t, path.join(d.out, 't2.onnx'));
      return [
        'finetune',
        d.model,
        '--data',
        d.data,
        ...TRAIN,
        '--teacher',
        t,
        '-o',
        path.join(d.out, 't2.onnx'),
      ];
    },
  });
  add('output is an input', 'prune --plan-in P --plan-out P', {
    setup: async (d) => {
      const plan = path.join(d.in, 'plan.json');
      await runQuiet(['prune', d.model, '--flops', '0.5', '--dry-run', '--plan-out', plan]);
      return ['prune', d.model, '--plan-in', plan, '--plan-out', plan, '-o', path.join(d.out, 'p.onnx')];
    },
  });
  add('output is an input', 'prune --plan-out onto the preprocessing spec it reads', {
    setup: (d) => [
      'prune',
      d.model,
      '--flops',
      '0.5',
      '--data',
      d.data,
      '--plan-out',
      path.join(d.in, 'm.preprocess.json'),
      '-o',
      path.join(d.out, 'p.onnx'),
    ],
  });
  add('output is an input', 'prune -o onto the preprocessing spec it reads', {
    setup: (d) => [...pruneWithData(d), '-o', path.join(d.in, 'm.preprocess.json')],
  });
  add('output is an input', 'recalibrate -o onto an image of its data set', {
    setup: (d) => {
      const data = path.join(d.in, 'data');
      fs.cpSync(d.data, data, { recursive: true });
      return [
        'recalibrate',
        d.model,
        '--data',
        data,
        '--batches',
        '1',
        '--batch',
        '10',
        '-o',
        path.join(data, 'class0', '0.png'),
      ];
    },
  });
  add('output is an input', "prune -o onto the input's external data file", {
    setup: (d) => ['prune', externalModel(d.in), '--flops', '0.5', '-o', path.join(d.in, 'w.bin')],
  });
  add('output is an input', "prune -o whose external data file is the input's", {
    setup: (d) => {
      const m = externalModel(d.in);
      fs.renameSync(path.join(d.in, 'w.bin'), path.join(d.in, 'p.onnx.data'));
      variantExternalLocation(m, 'p.onnx.data');
      return ['prune', m, '--flops', '0.5', '--external-data', '-o', path.join(d.in, 'p.onnx')];
    },
  });
  add('output is an input', 'finetune -o MODEL with --resume', {
    setup: (d) => ['finetune', d.model, '--data', d.data, ...TRAIN, '--resume', '-o', d.model],
  });

  // 2. Write failures: every output is written whole or not at all, and none when any fails.
  for (const [cmd, make] of Object.entries({
    prune: (d: CaseDirs, o: string) => ['prune', d.model, '--flops', '0.5', '-o', o],
    finetune: (d: CaseDirs, o: string) => ['finetune', d.model, '--data', d.data, ...TRAIN, '-o', o],
    recalibrate: (d: CaseDirs, o: string) => [
      'recalibrate',
      d.model,
      '--data',
      d.data,
      '--batches',
      '1',
      '--batch',
      '10',
      '-o',
      o,
    ],
  })) {
    add('write failure', `${cmd} -o in a missing folder`, {
      setup: (d) => make(d, path.join(d.out, 'missing', 'x.onnx')),
    });
    add('write failure', `${cmd} -o is a folder`, {
      setup: (d) => {
        fs.mkdirSync(path.join(d.out, 'x.onnx'));
        return make(d, path.join(d.out, 'x.onnx'));
      },
    });
    add('write failure', `${cmd} -o under a file`, {
      setup: (d) => make(d, path.join(d.model, 'x.onnx')),
    });
  }
  add('write failure', 'prune with data: OUT.report.svg is a folder (model must not be written either)', {
    setup: (d) => {
      fs.mkdirSync(path.join(d.out, 'p.onnx.report.svg'));
      return [...pruneWithData(d), '-o', path.join(d.out, 'p.onnx')];
    },
  });
  add('write failure', 'prune --plan-out in a missing folder', {
    setup: (d) => [
      'prune',
      d.model,
      '--flops',
      '0.5',
      '--plan-out',
      path.join(d.out, 'no', 'plan.json'),
      '-o',
      path.join(d.out, 'p.onnx'),
    ],
  });
  add('write failure', 'finetune --checkpoint in a missing folder', {
    setup: (d) => [
      'finetune',
      d.model,
      '--data',
      d.data,
      ...TRAIN,
      '--checkpoint',
      path.join(d.out, 'no', 'c.ckpt'),
      '-o',
      path.join(d.out, 'f.onnx'),
    ],
  });

  // 3. Invalid or hostile models, on every command that reads one.
  for (const bad of BAD_MODELS) {
    for (const [cmd, make] of Object.entries(COMMANDS)) {
      add('invalid model', `${cmd}: ${bad.name}`, {
        mayPass: bad.valid,
        isolate: cmd === 'prune' && /control/.test(bad.name),
        setup: (d) => {
          variant(d.model, (g, m) => bad.edit(g, m, d.in));
          return make(d, d.model);
        },
      });
    }
    add('invalid model', `inspect: ${bad.name}`, {
      // The same preflight as every other command: only the valid ones may pass.
      mayPass: bad.valid,
      // A child's stdout can be checked for raw control characters (in-process it mixes with the runner's).
      isolate: /control|escape/.test(bad.name),
      setup: (d) => {
        variant(d.model, (g, m) => bad.edit(g, m, d.in));
        return ['inspect', d.model, '--layers'];
      },
    });
  }

  // 4. Numeric options out of range or not finite.
  const numeric: [string, Cmd, string, string[]][] = [
    [
      'prune',
      (d, m) => ['prune', m, '-o', path.join(d.out, 'p.onnx')],
      '--flops',
      ['nan', '-1', '0', '1.5', 'inf'],
    ],
    ['prune', (d, m) => ['prune', m, '-o', path.join(d.out, 'p.onnx')], '--params', ['nan', '-0.5', '2']],
    [
      'prune',
      (d, m) => ['prune', m, '-o', path.join(d.out, 'p.onnx')],
      '--latency',
      // 1e-9: below the smallest model's MAC share, refused as --flops is.
      ['nan', '0', '-1', '1e-9'],
    ],
    ...(['--min-fraction', '--min-channels', '--round-to', '--seed', '--latency-batch'] as const).map(
      (o): [string, Cmd, string, string[]] => [
        'prune',
        (d, m) => ['prune', m, '--flops', '0.5', '-o', path.join(d.out, 'p.onnx')],
        o,
        o === '--min-fraction'
          ? ['nan', '-1', '1.5']
          : o === '--seed'
            ? ['nan', '1.5']
            : ['nan', '-1', '0.5'],
      ],
    ),
    ...(
      [
        ['--calibration-images', ['nan', '-1']],
        ['--recal-batches', ['nan', '-1']],
        ['--recal-batch-size', ['0', 'nan']],
        ['--finetune-epochs', ['nan', '-1', '1.5']],
        ['--finetune-lr', ['nan', '-1', 'inf', '0']],
        ['--finetune-batch', ['0', 'nan', '1e12']],
        ['--finetune-limit', ['0', 'nan']],
        ['--finetune-sam', ['nan', '-0.05', 'inf', '11']],
        ['--val-limit', ['0', 'nan']],
        ['--threads', ['0', 'nan']],
      ] as const
    ).map(([o, vs]): [string, Cmd, string, string[]] => [
      'prune --data',
      (d) => [...pruneWithData(d), '-o', path.join(d.out, 'p.onnx')],
      o,
      [...vs],
    ]),
    ...(
      [
        ['--epochs', ['0', 'nan', '1.5', '-1']],
        ['--batch', ['0', 'nan', '1e12', '1.5']],
        ['--lr', ['nan', '-1', 'inf', '0', '1e30']],
        ['--momentum', ['nan', '-1', '1.5']],
        ['--weight-decay', ['nan', '-1']],
        ['--warmup', ['nan', '-1', 'inf']],
        ['--label-smoothing', ['nan', '-0.1', '1.5']],
        ['--seed', ['nan']],
        ['--limit', ['0', 'nan']],
        ['--sam', ['nan', '-0.05', 'inf', '11']],
        ['--threads', ['0', 'nan', '1.5']],
      ] as const
    ).map(([o, vs]): [string, Cmd, string, string[]] => ['finetune', COMMANDS.finetune!, o, [...vs]]),
    ['finetune --val', (d, m) => [...COMMANDS.finetune!(d, m), '--val', d.data], '--val-limit', ['0', 'nan']],
    ...(
      [
        ['--temperature', ['0', 'nan', '-1']],
        ['--alpha', ['nan', '2', '-1']],
      ] as const
    ).map(([o, vs]): [string, Cmd, string, string[]] => [
      'finetune --teacher',
      (d, m) => [...COMMANDS.finetune!(d, m), '--teacher', m],
      o,
      [...vs],
    ]),
    ...(
      [
        ['--batch', ['0', 'nan', '1e12', '-1']],
        ['--limit', ['0', 'nan', '1.5']],
        ['--resize', ['0', 'nan', '-1', '1e9']],
        ['--crop', ['0', 'nan']],
        ['--seed', ['nan']],
        ['--threads', ['0', 'nan']],
      ] as const
    ).map(([o, vs]): [string, Cmd, string, string[]] => ['eval', COMMANDS.eval!, o, [...vs]]),
    ...(
      [
        ['--batches', ['0', 'nan', '-1', '1.5']],
        ['--batch', ['0', 'nan', '1e12']],
      ] as const
    ).map(([o, vs]): [string, Cmd, string, string[]] => ['recalibrate', COMMANDS.recalibrate!, o, [...vs]]),
    ...(
      [
        ['--seconds', ['-1', 'nan', 'inf']],
        ['--runs', ['0', '-1', 'nan', '1.5']],
        ['--batch', ['0', 'nan', '1e12', '1.5']],
        ['--warmup', ['-1', 'nan']],
        ['--threads', ['0', 'nan']],
      ] as const
    ).map(([o, vs]): [string, Cmd, string, string[]] => ['bench', (_d, m) => ['bench', m], o, [...vs]]),
  ];
  for (const [label, make, option, values] of numeric)
    for (const value of values)
      add('numeric option', `${label} ${option} ${value}`, {
        // Old code ran an endless benchmark on some of these (--seconds -1, --runs -1): the case's 60 s limit catches it.
        setup: (d) => [...make(d, d.model), option, value],
      });

  // 5. Command-line errors: yargs' own, and values given twice.
  const trailing: [string, (d: CaseDirs) => string[]][] = [
    ['prune --flops', (d) => ['prune', d.model, '--flops']],
    ['prune -o', (d) => ['prune', d.model, '--flops', '0.5', '-o']],
    ['prune --plan-out', (d) => ['prune', d.model, '--flops', '0.5', '--dry-run', '--plan-out']],
    ['prune --data', (d) => ['prune', d.model, '--flops', '0.5', '-o', path.join(d.out, 'p.onnx'), '--data']],
    ['prune --criterion', (d) => ['prune', d.model, '--flops', '0.5', '--criterion']],
    ['finetune --data', (d) => ['finetune', d.model, '-o', path.join(d.out, 'f.onnx'), '--data']],
    ['finetune -o', (d) => ['finetune', d.model, '--data', d.data, '-o']],
    [
      'finetune --lr',
      (d) => ['finetune', d.model, '--data', d.data, '-o', path.join(d.out, 'f.onnx'), '--lr'],
    ],
    [
      'finetune --teacher',
      (d) => ['finetune', d.model, '--data', d.data, '-o', path.join(d.out, 'f.onnx'), '--teacher'],
    ],
    [
      'finetune --checkpoint',
      (d) => ['finetune', d.model, '--data', d.data, '-o', path.join(d.out, 'f.onnx'), '--checkpoint'],
    ],
    ['eval --data', (d) => ['eval', d.model, '--data']],
    ['eval --batch', (d) => ['eval', d.model, '--data', d.data, '--batch']],
    ['bench --vs', (d) => ['bench', d.model, '--vs']],
    ['bench --runs', (d) => ['bench', d.model, '--runs']],
    ['bench --seconds', (d) => ['bench', d.model, '--seconds']],
    ['inspect --input-shape', (d) => ['inspect', d.model, '--input-shape']],
    ['recalibrate -o', (d) => ['recalibrate', d.model, '--data', d.data, '-o']],
  ];
  for (const [name, make] of trailing)
    add('command line', `trailing ${name} without a value`, { setup: make });
  const misc: [string, (d: CaseDirs) => string[]][] = [
    [
      'unknown option',
      (d) => ['prune', d.model, '--flops', '0.5', '--nope', '-o', path.join(d.out, 'p.onnx')],
    ],
    ['unknown command', () => ['prunex']],
    ['no command', () => []],
    ['missing model', () => ['prune', '--flops', '0.5']],
    ['--flops not a number', (d) => ['prune', d.model, '--flops', 'half', '-o', path.join(d.out, 'p.onnx')]],
    [
      '--flops twice',
      (d) => ['prune', d.model, '--flops', '0.5', '--flops', '0.6', '-o', path.join(d.out, 'p.onnx')],
    ],
    [
      '-o twice',
      (d) => [
        'prune',
        d.model,
        '--flops',
        '0.5',
        '-o',
        path.join(d.out, 'a.onnx'),
        '-o',
        path.join(d.out, 'b.onnx'),
      ],
    ],
    ['--data twice', (d) => ['eval', d.model, '--data', d.data, '--data', d.data]],
    ['--criterion not a criterion', (d) => ['prune', d.model, '--flops', '0.5', '--criterion', 'best']],
    ['--device not a device', (d) => ['eval', d.model, '--data', d.data, '--device', 'tpu']],
    ['--input-shape garbage', (d) => ['inspect', d.model, '--input-shape', '1x-3x28']],
    ['--preset unknown', (d) => ['eval', d.model, '--data', d.data, '--preset', 'nope']],
    [
      'two budgets',
      (d) => ['prune', d.model, '--flops', '0.5', '--params', '0.5', '-o', path.join(d.out, 'p.onnx')],
    ],
    ['no budget', (d) => ['prune', d.model, '-o', path.join(d.out, 'p.onnx')]],
    // Distillation options without distillation once did nothing, silently.
    [
      'prune --distill-gate without --distill',
      (d) => [...pruneWithData(d), '-o', path.join(d.out, 'p.onnx'), '--distill-gate', 'none'],
    ],
    [
      'finetune --distill-gate without --teacher',
      (d) => [...COMMANDS.finetune!(d, d.model), '--distill-gate', 'none'],
    ],
    ['finetune --alpha without --teacher', (d) => [...COMMANDS.finetune!(d, d.model), '--alpha', '0.3']],
    ['model path with escapes', (d) => ['inspect', path.join(d.in, `missing${ESC}.onnx`)]],
  ];
  for (const [name, make] of misc) add('command line', name, { setup: make });

  // 6. Non-regular files: FIFOs and devices never opened (they hang or never end), folders refused.
  const fifoCases: [string, (d: CaseDirs) => string[]][] = [
    ['inspect FIFO', (d) => ['inspect', fifo(path.join(d.in, 'p.onnx'))]],
    [
      'prune FIFO',
      (d) => ['prune', fifo(path.join(d.in, 'p.onnx')), '--flops', '0.5', '-o', path.join(d.out, 'x.onnx')],
    ],
    ['eval FIFO', (d) => ['eval', fifo(path.join(d.in, 'p.onnx')), '--data', d.data]],
    ['bench FIFO', (d) => ['bench', fifo(path.join(d.in, 'p.onnx')), '--runs', '1']],
    ['bench --vs FIFO', (d) => ['bench', d.model, '--vs', fifo(path.join(d.in, 'p.onnx')), '--runs', '1']],
    [
      'finetune --teacher FIFO',
      (d) => [
        'finetune',
        d.model,
        '--data',
        d.data,
        ...TRAIN,
        '--teacher',
        fifo(path.join(d.in, 'p.onnx')),
        '-o',
        path.join(d.out, 'f.onnx'),
      ],
    ],
    [
      'prune --plan-in FIFO',
      (d) => [
        'prune',
        d.model,
        '--plan-in',
        fifo(path.join(d.in, 'plan.json')),
        '-o',
        path.join(d.out, 'p.onnx'),
      ],
    ],
    [
      'eval --spec FIFO',
      (d) => ['eval', d.model, '--data', d.data, '--spec', fifo(path.join(d.in, 'spec.json'))],
    ],
    [
      'finetune --resume with a FIFO checkpoint',
      (d) => [
        'finetune',
        d.model,
        '--data',
        d.data,
        ...TRAIN,
        '--resume',
        '--checkpoint',
        fifo(path.join(d.in, 'c.ckpt')),
        '-o',
        path.join(d.out, 'f.onnx'),
      ],
    ],
    [
      'eval with a FIFO image',
      (d) => {
        const data = path.join(d.in, 'data');
        fs.cpSync(d.data, data, { recursive: true });
        fs.rmSync(path.join(data, 'class3', '1.png'));
        fifo(path.join(data, 'class3', '1.png'));
        return ['eval', d.model, '--data', data];
      },
    ],
    [
      'eval with a FIFO external data file',
      (d) => {
        const m = externalModel(d.in);
        fs.rmSync(path.join(d.in, 'w.bin'));
        fifo(path.join(d.in, 'w.bin'));
        return ['eval', m, '--data', d.data];
      },
    ],
    ['eval /dev/zero', (d) => ['eval', '/dev/zero', '--data', d.data]],
    ['bench /dev/zero', () => ['bench', '/dev/zero', '--runs', '1']],
  ];
  for (const [name, make] of fifoCases) add('non-regular file', name, { setup: make, isolate: true });
  add('non-regular file', 'eval a folder', { setup: (d) => ['eval', d.in, '--data', d.data] });
  add('non-regular file', 'bench --vs a folder', { setup: (d) => ['bench', d.model, '--vs', d.in] });
  add('non-regular file', 'finetune --teacher a folder', {
    setup: (d) => [
      'finetune',
      d.model,
      '--data',
      d.data,
      ...TRAIN,
      '--teacher',
      d.in,
      '-o',
      path.join(d.out, 'f.onnx'),
    ],
  });

  // 7. External data: hard links, bad locations and read errors reach no path-taking reader.
  const externals: [string, (d: CaseDirs) => string][] = [
    [
      'external data is a hard link',
      (d) => {
        const m = externalModel(d.in);
        fs.linkSync(path.join(d.in, 'w.bin'), path.join(d.out, 'w-link.bin'));
        return m;
      },
    ],
    ['external data file too short', (d) => externalModel(d.in, (_e, f) => fs.truncateSync(f, 100))],
    [
      'external data location is a folder',
      (d) =>
        externalModel(d.in, (e, f) => {
          fs.rmSync(f);
          fs.mkdirSync(f);
          void e;
        }),
    ],
    ['external data offset past the end', (d) => externalModel(d.in, (e) => (e[1].value = '99999999999'))],
    [
      'external data location through a symlink',
      (d) =>
        externalModel(d.in, (e, f) => {
          fs.renameSync(f, path.join(d.out, 'real.bin'));
          fs.symlinkSync(path.join(d.out, 'real.bin'), f);
          void e;
        }),
    ],
    ['external data length not matching dims', (d) => externalModel(d.in, (e) => (e[2].value = '12'))],
  ];
  for (const [name, make] of externals)
    for (const cmd of ['prune', 'eval', 'bench', 'finetune'] as const)
      add('external data', `${cmd}: ${name}`, { setup: (d) => COMMANDS[cmd]!(d, make(d)) });
  add('external data', 'bench --vs: external data is a hard link', {
    setup: (d) => {
      const m = externalModel(d.in);
      fs.linkSync(path.join(d.in, 'w.bin'), path.join(d.out, 'w-link.bin'));
      return ['bench', d.model, '--vs', m, '--runs', '1'];
    },
  });
  add('external data', 'finetune --teacher: external data is a hard link', {
    setup: (d) => {
      const m = externalModel(d.in);
      fs.linkSync(path.join(d.in, 'w.bin'), path.join(d.out, 'w-link.bin'));
      return [
        'finetune',
        d.model,
        '--data',
        d.data,
        ...TRAIN,
        '--teacher',
        m,
        '-o',
        path.join(d.out, 'f.onnx'),
      ];
    },
  });

  // 8. Damaged or forged checkpoints on --resume.
  const checkpointEdits: [string, (header: Msg, bytes: Buffer) => Buffer | undefined][] = [
    ['epoch 1e9', (h) => void (h.epoch = 1e9)],
    ['epoch -1', (h) => void (h.epoch = -1)],
    ['epoch 0.5', (h) => void (h.epoch = 0.5)],
    ['epoch a string', (h) => void (h.epoch = '1')],
    ['step negative', (h) => void (h.step = -5)],
    ['tensors not a list', (h) => void (h.tensors = { length: 3 })],
    ['a tensor length of -1', (h) => void (h.tensors[0].length = -1)],
    ['a tensor length of 1e15', (h) => void (h.tensors[0].length = 1e15)],
    ['a tensor of the wrong size', (h) => void (h.tensors[0].length -= 1)],
    ['a tensor missing', (h) => void h.tensors.splice(0, 1)],
    ['a tensor named __proto__', (h) => void (h.tensors[0].name = '__proto__')],
    ['history not a list', (h) => void (h.history = 'x')],
    ['best with a string epoch', (h) => void (h.best = { epoch: 'x', accuracy: 1 })],
    ['header not an object', () => Buffer.from('ADAPRUNER-CKPT-1\n[1,2]\n')],
    ['header not JSON', () => Buffer.from('ADAPRUNER-CKPT-1\n{"epoch":\n')],
    ['no magic', () => Buffer.from('hello\n')],
    ['empty file', () => Buffer.alloc(0)],
    ['NaN weights', () => undefined],
    ['truncated', () => undefined],
  ];
  for (const [name, edit] of checkpointEdits)
    add('checkpoint', `finetune --resume: ${name}`, {
      setup: (d) => {
        const ckpt = path.join(d.in, 'c.ckpt');
        fs.copyFileSync(d.checkpoint, ckpt);
        const bytes = fs.readFileSync(ckpt);
        const end = bytes.indexOf(10, 17);
        const header = JSON.parse(bytes.subarray(17, end).toString());
        let out = edit(header, bytes);
        if (!out) {
          if (name === 'NaN weights') {
            out = Buffer.from(bytes);
            out.writeFloatLE(NaN, out.length - 4);
          } else if (name === 'truncated') out = bytes.subarray(0, bytes.length - 100);
          else {
            // Same layout: the header keeps its length class only if padding is redone, so rebuild.
            const text = Buffer.from(`ADAPRUNER-CKPT-1\n${JSON.stringify(header)}\n`);
            const pad = Buffer.alloc((4 - (text.length % 4)) % 4, 0x20);
            let start = end + 1;
            start += (4 - (start % 4)) % 4;
            out = Buffer.concat([text, pad, bytes.subarray(start)]);
          }
        }
        fs.writeFileSync(ckpt, out);
        return [
          'finetune',
          d.model,
          '--data',
          d.data,
          ...CHECKPOINT_ARGS,
          '--resume',
          '--checkpoint',
          ckpt,
          '-o',
          path.join(d.out, 'f.onnx'),
        ];
      },
    });

  // 9. Hostile data sets.
  add('data set', 'class folder is a symlink out of the data root', {
    setup: (d) => {
      const data = copyData(d);
      fs.rmSync(path.join(data, 'class5'), { recursive: true });
      fs.symlinkSync(path.join(d.root, '..'), path.join(data, 'class5'));
      return ['eval', d.model, '--data', data];
    },
  });
  add('data set', 'image is a symlink out of the data root', {
    setup: (d) => {
      const data = copyData(d);
      const outside = path.join(d.in, 'outside.png');
      fs.copyFileSync(path.join(data, 'class1', '0.png'), outside);
      fs.rmSync(path.join(data, 'class1', '0.png'));
      fs.symlinkSync(outside, path.join(data, 'class1', '0.png'));
      return ['eval', d.model, '--data', data];
    },
  });
  add('data set', 'tar with a symlink member pointing outside', {
    setup: (d) => {
      const data = copyData(d);
      const outside = path.join(d.in, 'outside.png');
      fs.copyFileSync(path.join(data, 'class1', '0.png'), outside);
      fs.rmSync(path.join(data, 'class1', '0.png'));
      fs.symlinkSync(outside, path.join(data, 'class1', '0.png'));
      const tar = path.join(d.in, 'evil.tar');
      execFileSync('tar', ['-cf', tar, '-C', d.in, 'data']);
      return ['eval', d.model, '--data', tar];
    },
  });
  add('data set', 'tar with a symlinked class folder pointing to /', {
    setup: (d) => {
      const data = copyData(d);
      fs.rmSync(path.join(data, 'class5'), { recursive: true });
      fs.symlinkSync('/', path.join(data, 'class5'));
      const tar = path.join(d.in, 'evil.tar');
      execFileSync('tar', ['-cf', tar, '-C', d.in, 'data']);
      return ['eval', d.model, '--data', tar];
    },
  });
  add('data set', 'image of 16000x16000 pixels', {
    setup: async (d) => {
      const data = copyData(d);
      fs.writeFileSync(path.join(data, 'class2', '1.png'), blankPng(16000, 16000));
      return ['eval', d.model, '--data', data];
    },
  });
  add('data set', 'a PNG that is not an image', {
    setup: (d) => {
      const data = copyData(d);
      fs.writeFileSync(path.join(data, 'class2', '1.png'), 'not an image');
      return ['eval', d.model, '--data', data];
    },
  });
  add('data set', 'a tar that is not a tar', {
    setup: (d) => {
      const tar = path.join(d.in, 'bad.tar');
      fs.writeFileSync(tar, 'garbage'.repeat(100));
      return ['eval', d.model, '--data', tar];
    },
  });
  add('data set', 'cache root is a symlink', {
    env: (d) => ({ TMPDIR: path.join(d.in, 'tmp') }),
    setup: (d) => {
      const tmp = path.join(d.in, 'tmp');
      fs.mkdirSync(tmp);
      fs.mkdirSync(path.join(d.in, 'victim'));
      fs.writeFileSync(path.join(d.in, 'victim', 'keep.txt'), 'precious');
      for (const name of cacheNames()) fs.symlinkSync(path.join(d.in, 'victim'), path.join(tmp, name));
      return ['eval', d.model, '--data', d.dataTar];
    },
  });
  add('data set', 'cache root owned by another user', {
    env: (d) => ({ TMPDIR: path.join(d.in, 'tmp') }),
    setup: (d) => {
      const tmp = path.join(d.in, 'tmp');
      fs.mkdirSync(tmp);
      for (const name of cacheNames()) {
        fs.mkdirSync(path.join(tmp, name), { mode: 0o700 });
        fs.chownSync(path.join(tmp, name), 65534, 65534);
      }
      return ['eval', d.model, '--data', d.dataTar];
    },
  });
  add('data set', 'cache root writable by others', {
    env: (d) => ({ TMPDIR: path.join(d.in, 'tmp') }),
    setup: (d) => {
      const tmp = path.join(d.in, 'tmp');
      fs.mkdirSync(tmp);
      for (const name of cacheNames()) {
        fs.mkdirSync(path.join(tmp, name));
        fs.chmodSync(path.join(tmp, name), 0o777);
      }
      return ['eval', d.model, '--data', d.dataTar];
    },
  });
  issue32Cases(add);
  return cases;
}

type Add = (klass: string, name: string, c: Omit<AdversarialCase, 'klass' | 'name'>) => void;

/** Issue 32's hostile classes: models checked before training, checkpoints, data streams and archives, files. */
function issue32Cases(add: Add): void {
  const resume = (d: CaseDirs, ckpt: string, data = d.data): string[] => [
    'finetune',
    d.model,
    '--data',
    data,
    ...CHECKPOINT_ARGS,
    '--resume',
    '--checkpoint',
    ckpt,
    '-o',
    path.join(d.out, 'f.onnx'),
  ];
  add('checkpoint', 'finetune --resume: a negative BatchNormalization variance in the checkpoint', {
    setup: (d) => {
      const ckpt = path.join(d.in, 'c.ckpt');
      const bytes = Buffer.from(fs.readFileSync(d.checkpoint));
      const end = bytes.indexOf(10, 17);
      const header = JSON.parse(bytes.subarray(17, end).toString()) as {
        tensors: { name: string; length: number }[];
      };
      let offset = end + 1 + ((4 - ((end + 1) % 4)) % 4);
      for (const t of header.tensors) {
        if (/running_var/.test(t.name)) break;
        offset += 4 * t.length;
      }
      bytes.writeFloatLE(-1, offset);
      fs.writeFileSync(ckpt, bytes);
      return resume(d, ckpt);
    },
  });
  add('checkpoint', 'finetune --resume: the checkpoint of another model with the same architecture', {
    setup: (d) => {
      variant(d.model, (g) => {
        const w = g.initializer.find((t: Msg) => t.dims.length === 4);
        const f = floats(w);
        f[0]! += 0.5;
        w.raw_data = Buffer.from(f.buffer);
      });
      const ckpt = path.join(d.in, 'c.ckpt');
      fs.copyFileSync(d.checkpoint, ckpt);
      return resume(d, ckpt);
    },
  });
  add('checkpoint', 'finetune --resume with --data spelled relative (the run was absolute): resumes', {
    mustPass: true,
    setup: (d) => {
      const ckpt = path.join(d.out, 'c.ckpt');
      fs.copyFileSync(d.checkpoint, ckpt);
      return resume(d, ckpt, path.relative(process.cwd(), d.data));
    },
  });

  add('invalid model', 'bench: an input dimension of 2^40', {
    setup: (d) => {
      variant(d.model, (g) => void (g.input[0].type.tensor_type.shape.dim[2] = { dim_value: 2 ** 40 }));
      return COMMANDS.bench!(d, d.model);
    },
  });
  for (const cmd of ['prune', 'eval', 'inspect'] as const)
    add('invalid model', `${cmd}: an input dimension of 2^40`, {
      mayPass: true,
      setup: (d) => {
        variant(d.model, (g) => void (g.input[0].type.tensor_type.shape.dim[2] = { dim_value: 2 ** 40 }));
        return cmd === 'inspect' ? ['inspect', d.model] : COMMANDS[cmd]!(d, d.model);
      },
    });
  add('command line', 'bench --input-shape on a model with fixed dimensions', {
    setup: (d) => [...COMMANDS.bench!(d, d.model), '--input-shape', '1x1x28x28'],
  });

  // Files that fail to parse are named with a position, never quoted.
  const secret = (d: CaseDirs): string => {
    const f = path.join(d.in, 'secret.json');
    fs.writeFileSync(f, 'SECRET-TOKEN-1234 is not JSON\n');
    return f;
  };
  add('file content', 'prune --plan-in a file that is not JSON', {
    forbid: /SECRET/,
    setup: (d) => ['prune', d.model, '--plan-in', secret(d), '-o', path.join(d.out, 'p.onnx')],
  });
  add('file content', 'eval --spec a file that is not JSON', {
    forbid: /SECRET/,
    setup: (d) => ['eval', d.model, '--data', d.data, '--spec', secret(d)],
  });
  for (const [flag, cmd] of [
    [
      '--plan-in',
      (d: CaseDirs) => ['prune', d.model, '--plan-in', '/etc/passwd', '-o', path.join(d.out, 'p.onnx')],
    ],
    ['--spec', (d: CaseDirs) => ['eval', d.model, '--data', d.data, '--spec', '/etc/passwd']],
  ] as const)
    add('file content', `${flag} /etc/passwd`, { forbid: /root:|:0:/, setup: cmd });

  // IDX: a gzip file that expands to more than 1 GiB is refused from its header, or past what it promised.
  add('data set', 'gzip IDX whose header promises 1.4 million images (1.1 GB of zeros)', {
    isolate: true,
    setup: (d) => ['eval', d.model, '--data', idxBomb(d, 1_400_000), '--limit', '20'],
  });
  add('data set', 'gzip IDX of 20 images that expands to 1.1 GB', {
    isolate: true,
    setup: (d) => ['eval', d.model, '--data', idxBomb(d, 20), '--limit', '20'],
  });

  // Archives: refused ones leave nothing in the cache; only regular files and folders are extracted.
  const cacheEnv = (d: CaseDirs) => ({ TMPDIR: path.join(d.in, 'tmp') });
  const privateCache = (d: CaseDirs): void => {
    const tmp = path.join(d.in, 'tmp');
    fs.mkdirSync(tmp);
    fs.mkdirSync(path.join(tmp, cacheNames()[1]!), { mode: 0o700 });
  };
  add('data set', 'gzip tar (1 MB) holding a 1.1 GiB member: refused, nothing left in the cache', {
    env: cacheEnv,
    setup: (d) => {
      privateCache(d);
      const tar = path.join(d.in, 'bomb.tar');
      const size = 18 * ZERO_CHUNK;
      fs.writeFileSync(
        tar,
        Buffer.concat([
          zlib.gzipSync(tarHeader('data/class0/0.png', size, '0')),
          ...Array.from({ length: 18 }, () => zeroChunkGzip()),
          zlib.gzipSync(Buffer.alloc(1024)),
        ]),
      );
      return ['eval', d.model, '--data', tar];
    },
  });
  for (const [type, what, link] of [
    ['3', 'a character device', ''],
    ['4', 'a block device', ''],
    ['6', 'a FIFO', ''],
    ['1', 'a hard link to /etc/passwd', '/etc/passwd'],
    ['2', 'a symbolic link to /', '/'],
  ] as const)
    add('data set', `tar with ${what} among the images`, {
      env: cacheEnv,
      setup: async (d) => {
        privateCache(d);
        const png = fs.readFileSync(path.join(d.data, 'class0', '0.png'));
        const tar = path.join(d.in, 'evil.tar');
        fs.writeFileSync(
          tar,
          Buffer.concat([
            tarHeader('data/class0/0.png', png.length, '0'),
            png,
            Buffer.alloc((512 - (png.length % 512)) % 512),
            tarHeader('data/class0/1.png', 0, type, link),
            Buffer.alloc(1024),
          ]),
        );
        return ['eval', d.model, '--data', tar];
      },
    });
  add('data set', 'image is a hard link to a file outside the data set', {
    setup: (d) => {
      const data = copyData(d);
      const outside = path.join(d.in, 'outside.png');
      fs.copyFileSync(path.join(data, 'class1', '0.png'), outside);
      fs.rmSync(path.join(data, 'class1', '0.png'));
      fs.linkSync(outside, path.join(data, 'class1', '0.png'));
      return ['eval', d.model, '--data', data];
    },
  });
  unlabelledCases(add);
}

/** Unlabelled data (issue 29): empty and mixed folders, labels where none are, list files naming bad entries. */
function unlabelledCases(
  add: (klass: string, name: string, c: Omit<AdversarialCase, 'klass' | 'name'>) => void,
) {
  const recalibrate = (d: CaseDirs, data: string) => [
    'recalibrate',
    d.model,
    '--data',
    data,
    '-o',
    path.join(d.out, 'r.onnx'),
  ];
  /** A list file beside a copy of the data set, holding `lines`. */
  const list = (d: CaseDirs, lines: string): string => {
    copyData(d);
    fs.writeFileSync(path.join(d.in, 'list.txt'), lines);
    return path.join(d.in, 'list.txt');
  };
  add('data set', 'an empty folder', {
    setup: (d) => {
      fs.mkdirSync(path.join(d.in, 'empty'));
      return recalibrate(d, path.join(d.in, 'empty'));
    },
  });
  add('data set', 'images beside class folders (mixed labelled and unlabelled)', {
    setup: (d) => {
      const data = copyData(d);
      fs.copyFileSync(path.join(data, 'class1', '0.png'), path.join(data, 'loose.png'));
      return recalibrate(d, data);
    },
  });
  add('data set', 'eval on a folder of images without labels', {
    setup: (d) => ['eval', d.model, '--data', path.join(copyData(d), 'class3')],
  });
  add('data set', 'prune --data on a list of one image (no labels: none to hold out)', {
    setup: (d) => ['prune', d.model, '--flops', '0.5', '--data', list(d, 'data/class1/0.png\n'), '--dry-run'],
  });
  add('data set', 'a list naming a missing file', {
    setup: (d) => recalibrate(d, list(d, 'data/class1/0.png\ndata/class1/missing.png\n')),
  });
  add('data set', 'a list naming a file that is no image', {
    setup: (d) => {
      const l = list(d, 'data/class1/0.png\nnotes.png\n');
      fs.writeFileSync(path.join(d.in, 'notes.png'), 'not an image');
      return recalibrate(d, l);
    },
  });
  add('data set', 'a list naming a hard link to a file outside', {
    setup: (d) => {
      const l = list(d, 'data/class1/0.png\nlinked.png\n');
      const outside = path.join(d.root, 'outside.png');
      fs.copyFileSync(path.join(d.data, 'class1', '0.png'), outside);
      fs.linkSync(outside, path.join(d.in, 'linked.png'));
      return recalibrate(d, l);
    },
  });
  add('data set', 'a list climbing out of its folder', {
    setup: (d) => {
      fs.copyFileSync(path.join(d.data, 'class1', '0.png'), path.join(d.root, 'outside.png'));
      return recalibrate(d, list(d, '../in/data/class1/0.png\n../outside.png\n'));
    },
  });
  add('data set', 'a list that is /etc/passwd', {
    forbid: /root:|:0:/,
    setup: (d) => {
      fs.copyFileSync('/etc/passwd', path.join(d.in, 'passwd.txt'));
      return recalibrate(d, path.join(d.in, 'passwd.txt'));
    },
  });
}

/** 64 MiB of zeros: gzip members of it, concatenated, make a small file that expands without end. */
const ZERO_CHUNK = 64 << 20;
let zeroGzip: Buffer | undefined;
function zeroChunkGzip(): Buffer {
  return (zeroGzip ??= zlib.gzipSync(Buffer.alloc(ZERO_CHUNK), { level: 9 }));
}

/** A folder with a t10k IDX set of `images` 28x28 images whose gzip data expands to 1.1 GB. */
function idxBomb(d: CaseDirs, images: number): string {
  const dir = path.join(d.in, 'idx');
  fs.mkdirSync(dir);
  const header = Buffer.alloc(16);
  header.writeUInt32BE(0x00000803, 0);
  header.writeUInt32BE(images, 4);
  header.writeUInt32BE(28, 8);
  header.writeUInt32BE(28, 12);
  fs.writeFileSync(
    path.join(dir, 't10k-images-idx3-ubyte.gz'),
    Buffer.concat([zlib.gzipSync(header), ...Array.from({ length: 17 }, () => zeroChunkGzip())]),
  );
  const labels = Buffer.alloc(8 + images);
  labels.writeUInt32BE(0x00000801, 0);
  labels.writeUInt32BE(images, 4);
  for (let i = 0; i < images; i++) labels[8 + i] = i % 10;
  fs.writeFileSync(path.join(dir, 't10k-labels-idx1-ubyte'), labels);
  return dir;
}

/** One ustar header block. */
function tarHeader(name: string, size: number, type: string, link = ''): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, 100, 'utf8');
  b.write('0000644\0', 100, 'latin1');
  b.write('0000000\0', 108, 'latin1');
  b.write('0000000\0', 116, 'latin1');
  b.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  b.write('00000000000\0', 136, 'latin1');
  b.write(type, 156, 'latin1');
  b.write(link, 157, 100, 'utf8');
  b.write('ustar\0', 257, 'latin1');
  b.write('00', 263, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

/** The cache folder names the old and the new layout use under $TMPDIR. */
function cacheNames(): string[] {
  return ['adapruner-cache', `adapruner-cache-${process.getuid?.() ?? 0}`];
}

/** A valid 1-bit greyscale PNG of `width` x `height` zeros: megapixels in a few kilobytes, made in milliseconds. */
function blankPng(width: number, height: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer): number => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(type), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 1; // bit depth
  ihdr[9] = 0; // greyscale
  const raw = Buffer.alloc((1 + Math.ceil(width / 8)) * height); // filter byte 0 + zero pixels per row
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function copyData(d: CaseDirs): string {
  const data = path.join(d.in, 'data');
  fs.cpSync(d.data, data, { recursive: true });
  return data;
}

function pruneWithData(d: CaseDirs): string[] {
  return [
    'prune',
    d.model,
    '--flops',
    '0.5',
    '--data',
    d.data,
    '--calibration-images',
    '10',
    '--recal-batches',
    '1',
    '--recal-batch-size',
    '10',
    '--finetune-epochs',
    '0',
    '--no-measure-latency',
    '--criterion',
    'l1',
  ];
}

function variantExternalLocation(file: string, location: string): void {
  const m = decodeProto(fs.readFileSync(file));
  for (const t of m.graph.initializer)
    for (const e of t.external_data ?? []) if (e.key === 'location') e.value = location;
  fs.writeFileSync(file, encodeProto(m));
}

/** Runs the CLI in-process for a setup step, keeping quiet. */
async function runQuiet(args: string[]): Promise<void> {
  const { runCli } = await import('./helpers.js');
  const r = await runCli(args);
  if (r.code !== 0) throw new Error(`setup failed: ${args.join(' ')}: ${r.stderr}`);
}

/**
 * Mutation `index` of a model file for the fuzz (test: 1,000; bench/fuzz.ts: 10,000): one to four bytes
 * overwritten, mostly where the structure lies (the graph's names and attributes in the first kilobyte and
 * the last two), seeded by the index so any failure can be replayed alone.
 */
export function mutateModel(original: Uint8Array, index: number): Buffer {
  let seed = (Math.imul(index + 1, 2654435761) ^ 12345) >>> 0;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed % n;
  };
  const bytes = Buffer.from(original);
  const edits = 1 + rand(4);
  for (let k = 0; k < edits; k++) {
    const at = rand(3) === 0 ? rand(bytes.length) : rand(2) ? rand(1024) : bytes.length - 1 - rand(2048);
    bytes[at] = rand(256);
  }
  return bytes;
}

/** The command a fuzz mutation runs: every tenth a data-free prune (dry run), the rest inspect. */
export function fuzzCommand(file: string, index: number): string[] {
  return index % 10 === 0 ? ['prune', file, '--flops', '0.5', '--dry-run'] : ['inspect', file];
}
