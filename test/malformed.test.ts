import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { main } from '../src/cli/main.js';
import { UserError } from '../src/errors.js';
import { AttributeType, DataType, loadModel } from '../src/ir/index.js';
import { ModelProtoType } from '../src/ir/onnx-schema.js';
import { FIXTURES, REPO, tmpDir } from './helpers.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- protobuf messages are plain objects */
type Msg = Record<string, any>;

const DIR = tmpDir('adapruner-malformed-');
const REAL = fs.readFileSync(path.join(FIXTURES, 'resnet_b.onnx'));
/** No single malformed file may take longer than this to be refused. */
const CASE_BUDGET_MS = 2000;

let counter = 0;
function writeCase(bytes: Uint8Array, name = `case-${counter++}.onnx`): string {
  const file = path.join(DIR, name);
  fs.writeFileSync(file, bytes);
  return file;
}

/** Loads `file`: it must either load or fail with a one-line UserError naming it, quickly. */
function loadOrRefuse(file: string): 'loaded' | 'refused' {
  const start = performance.now();
  try {
    loadModel(file);
    return 'loaded';
  } catch (e) {
    assert.ok(e instanceof UserError, `not a UserError: ${(e as Error)?.stack ?? e}`);
    assert.ok(e.message.startsWith(`${file}: `), e.message);
    assert.ok(!e.message.includes('\n'), 'one line');
    assert.equal(e.exitCode, 2);
    return 'refused';
  } finally {
    const ms = performance.now() - start;
    assert.ok(ms < CASE_BUDGET_MS, `took ${ms.toFixed(0)} ms`);
  }
}

function mustRefuse(file: string, message: RegExp): void {
  assert.throws(
    () => loadModel(file),
    (e: unknown) =>
      e instanceof UserError &&
      message.test(e.message) &&
      e.message.startsWith(file) &&
      !e.message.includes('\n'),
  );
}

/** Runs `adapruner inspect file` in this process: exit code 2 and one stderr line naming the file. */
async function inspectRefuses(t: TestContext, file: string): Promise<string> {
  const lines: string[] = [];
  const mocked = t.mock.method(console, 'error', (...args: unknown[]) => lines.push(args.join(' ')));
  const log = t.mock.method(process.stdout, 'write', () => true);
  try {
    assert.equal(await main(['inspect', file]), 2);
  } finally {
    mocked.mock.restore();
    log.mock.restore();
  }
  assert.equal(lines.length, 1, lines.join('\n'));
  assert.ok(lines[0]!.startsWith(`adapruner: ${file}: `), lines[0]);
  assert.ok(!lines[0]!.includes('\n'));
  return lines[0]!;
}

// ---- raw protobuf building blocks, for files no well-behaved encoder would write ----

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}
const tag = (field: number, wire: number): number[] => varint(field * 8 + wire);
const text = (s: string): number[] => [...Buffer.from(s)];
const lengthDelimited = (field: number, payload: number[]): number[] => [
  ...tag(field, 2),
  ...varint(payload.length),
  ...payload,
];
const OPSET = lengthDelimited(8, [...tag(2, 0), ...varint(13)]);
const IR_VERSION = [...tag(1, 0), ...varint(8)];

/** A valid tiny model: Y = Relu(X + B), X of shape [1, 3]. */
function tinyModel(): Msg {
  const dims = (d: number[]): Msg => ({
    tensor_type: { elem_type: DataType.FLOAT, shape: { dim: d.map((v) => ({ dim_value: v })) } },
  });
  return {
    ir_version: 8,
    opset_import: [{ version: 13 }],
    graph: {
      name: 'tiny',
      node: [
        { input: ['X', 'B'], output: ['S'], op_type: 'Add', name: 'add' },
        { input: ['S'], output: ['Y'], op_type: 'Relu', name: 'relu' },
      ],
      initializer: [{ name: 'B', dims: [3], data_type: DataType.FLOAT, raw_data: new Uint8Array(12) }],
      input: [{ name: 'X', type: dims([1, 3]) }],
      output: [{ name: 'Y', type: dims([1, 3]) }],
      value_info: [{ name: 'S', type: dims([1, 3]) }],
    },
  };
}
const encode = (m: Msg): Uint8Array => ModelProtoType.encode(ModelProtoType.fromObject(m)).finish();

test('the tiny model itself loads (the cases below differ from it in one way each)', async (t) => {
  assert.equal(loadOrRefuse(writeCase(encode(tinyModel()))), 'loaded');
  const lines: string[] = [];
  const out = t.mock.method(process.stdout, 'write', (chunk: string) => lines.push(chunk) > 0);
  const code = await main(['inspect', writeCase(encode(tinyModel()))]);
  out.mock.restore();
  assert.equal(code, 0);
  assert.match(lines.join(''), /Relu/);
});

// ---- truncation, random bytes, mutations (properties) ----

test('a real model cut at any point is refused cleanly', () => {
  const refused = new Set<number>();
  fc.assert(
    fc.property(fc.integer({ min: 0, max: REAL.length - 1 }), (cut) => {
      assert.equal(
        loadOrRefuse(writeCase(REAL.subarray(0, cut), 'truncated.onnx')),
        'refused',
        `cut at ${cut}`,
      );
      refused.add(cut);
    }),
    {
      seed: 2024,
      numRuns: 400,
      examples: [[0], [1], [2], [REAL.length - 1], [REAL.length - 2], [REAL.length >> 1]],
    },
  );
  assert.ok(refused.size > 300);
});

test('random bytes are refused cleanly', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 4096 }), (bytes) => {
      assert.equal(loadOrRefuse(writeCase(bytes, 'random.onnx')), 'refused');
    }),
    { seed: 7, numRuns: 500 },
  );
});

test('a real model with random bytes overwritten either loads or is refused cleanly (never a crash)', () => {
  const outcomes = { loaded: 0, refused: 0 };
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(REAL.length - 1), fc.nat(255)), { minLength: 1, maxLength: 8 }),
      (edits) => {
        const bytes = Uint8Array.from(REAL);
        for (const [at, value] of edits) bytes[at] = value;
        outcomes[loadOrRefuse(writeCase(bytes, 'mutated.onnx'))]++;
      },
    ),
    { seed: 99, numRuns: 300 },
  );
  // Most flipped bytes land in weight data (still a valid model); some hit the structure.
  assert.ok(outcomes.refused > 0 && outcomes.loaded > 0, JSON.stringify(outcomes));
});

// ---- hand-made malformed files ----

interface Case {
  what: string;
  bytes: () => Uint8Array;
  message: RegExp;
}

const withGraph =
  (edit: (g: Msg, m: Msg) => void): (() => Uint8Array) =>
  () => {
    const m = tinyModel();
    edit(m.graph, m);
    return encode(m);
  };

const CASES: Case[] = [
  { what: 'an empty file', bytes: () => new Uint8Array(), message: /empty file/ },
  {
    what: 'a text file',
    bytes: () => Buffer.from('hello, this is not a model\n'),
    message: /not a valid ONNX protobuf/,
  },
  {
    what: 'a string where the graph message is expected',
    bytes: () =>
      Uint8Array.from([...IR_VERSION, ...OPSET, ...lengthDelimited(7, text('\u0007 not a graph'))]),
    message: /not a valid ONNX protobuf/,
  },
  {
    what: 'the graph field with a varint wire type',
    bytes: () => Uint8Array.from([...IR_VERSION, ...OPSET, ...tag(7, 0), ...varint(300), 1, 2, 3]),
    message: /not a valid ONNX protobuf/,
  },
  {
    what: 'an invalid wire type (7)',
    bytes: () => Uint8Array.from([...IR_VERSION, ...tag(3, 7), 1, 2]),
    message: /invalid wire type 7/,
  },
  {
    what: 'a model without a graph',
    bytes: () => Uint8Array.from([...IR_VERSION, ...OPSET]),
    message: /has no graph/,
  },
  {
    what: 'a model without opset_import',
    bytes: () => encode({ ...tinyModel(), opset_import: [] }),
    message: /imports no operator set/,
  },
  {
    what: 'a node reading an undefined value',
    bytes: withGraph((g) => (g.node[1].input = ['nowhere'])),
    message: /node 'relu': input 'nowhere' is not defined/,
  },
  {
    what: 'a value defined twice',
    bytes: withGraph((g) => (g.node[1].output = ['S'])),
    message: /'S' is defined twice/,
  },
  {
    what: 'a negative initializer dim',
    bytes: withGraph((g) => (g.initializer[0].dims = [-3])),
    message: /negative dimension -3/,
  },
  {
    what: 'a huge initializer dim',
    bytes: withGraph((g) => (g.initializer[0].dims = ['4611686018427387904'])),
    message: /tensor dimension 4611686018427387904 is out of range/,
  },
  {
    what: 'initializer dims with too many elements',
    bytes: withGraph((g) => (g.initializer[0].dims = [2 ** 26, 2 ** 26, 2 ** 26])),
    message: /too many elements/,
  },
  {
    what: 'initializer dims that do not match its data',
    bytes: withGraph((g) => (g.initializer[0].dims = [1000000, 1000000])),
    message: /has 12 bytes of data, expected 4000000000000/,
  },
  {
    what: 'initializer typed data of the wrong count',
    bytes: withGraph(
      (g) => (g.initializer[0] = { name: 'B', dims: [3], data_type: DataType.FLOAT, float_data: [1, 2] }),
    ),
    message: /holds 2 values, expected 3/,
  },
  {
    what: 'an initializer of an unknown data type',
    bytes: withGraph((g) => (g.initializer[0].data_type = 99)),
    message: /unsupported data type type#99/,
  },
  {
    what: 'a negative dim in value_info',
    bytes: withGraph((g) => (g.value_info[0].type.tensor_type.shape.dim[1].dim_value = -5)),
    message: /negative dimension -5/,
  },
  {
    what: 'a huge dim in value_info',
    bytes: withGraph((g) => (g.value_info[0].type.tensor_type.shape.dim[0].dim_value = '9007199254740993')),
    message: /dimension 9007199254740993 is out of range/,
  },
  {
    what: 'a negative dim in a graph input',
    bytes: withGraph((g) => (g.input[0].type.tensor_type.shape.dim[0].dim_value = -1)),
    message: /negative dimension -1/,
  },
  {
    what: 'a Constant tensor whose data does not match its dims',
    bytes: withGraph((g) =>
      g.node.unshift({
        output: ['C'],
        op_type: 'Constant',
        name: 'c',
        attribute: [
          {
            name: 'value',
            type: AttributeType.TENSOR,
            t: { dims: [5], data_type: DataType.FLOAT, raw_data: new Uint8Array(4) },
          },
        ],
      }),
    ),
    message: /node 'c'.*has 4 bytes of data, expected 20/,
  },
  {
    what: 'a length prefix claiming 3 GB',
    bytes: () =>
      Uint8Array.from([
        ...IR_VERSION,
        ...OPSET,
        ...tag(7, 2),
        ...varint(3_000_000_000),
        ...lengthDelimited(1, []),
      ]),
    message: /truncated or corrupt|invalid length encoding/,
  },
  {
    what: 'raw_data claiming 2 GiB',
    bytes: () =>
      Uint8Array.from([
        ...IR_VERSION,
        ...OPSET,
        ...lengthDelimited(7, [...tag(5, 2), ...varint(20), ...tag(9, 2), ...varint(2 ** 31), 0, 0]),
      ]),
    message: /truncated or corrupt/,
  },
];

for (const c of CASES) {
  test(`${c.what} is refused with a one-line error (loadModel and inspect, exit code 2)`, async (t) => {
    const file = writeCase(c.bytes());
    mustRefuse(file, c.message);
    assert.equal(loadOrRefuse(file), 'refused');
    assert.match(await inspectRefuses(t, file), c.message);
  });
}

/** Builds nested messages from the inside out: `levels` copies of `prefix(innerLength)` around `core`. */
function nest(levels: number, core: number[], prefix: (innerLength: number) => number[]): number[] {
  const chunks: number[][] = [core];
  let length = core.length;
  for (let i = 0; i < levels; i++) {
    const p = prefix(length);
    chunks.push(p);
    length += p.length;
  }
  const out: number[] = [];
  for (let i = chunks.length - 1; i >= 0; i--) for (const b of chunks[i]!) out.push(b);
  return out;
}

test('a chain of If subgraphs 10,000 deep is refused, not a stack overflow', async (t) => {
  const nodeFields = [
    ...lengthDelimited(1, text('c')),
    ...lengthDelimited(2, text('o')),
    ...lengthDelimited(4, text('If')),
  ];
  const attrFields = [
    ...lengthDelimited(1, text('then_branch')),
    ...tag(20, 0),
    ...varint(AttributeType.GRAPH),
  ];
  // graph { node { input, output, op_type, attribute { name, type, g: <inner graph> } } }
  const ifChain = (depth: number): Uint8Array => {
    const graph = nest(depth, [], (inner) => {
      const attrLength = attrFields.length + 1 + varint(inner).length + inner;
      const nodeLength = nodeFields.length + 1 + varint(attrLength).length + attrLength;
      return [
        ...tag(1, 2),
        ...varint(nodeLength),
        ...nodeFields,
        ...tag(5, 2),
        ...varint(attrLength),
        ...attrFields,
        ...tag(6, 2),
        ...varint(inner),
      ];
    });
    const input = lengthDelimited(11, lengthDelimited(1, text('c')));
    return Uint8Array.from([...IR_VERSION, ...OPSET, ...lengthDelimited(7, [...input, ...graph])]);
  };
  const file = writeCase(ifChain(10_000));
  mustRefuse(file, /nested too deeply/);
  assert.match(await inspectRefuses(t, file), /nested too deeply/);
  // A moderately nested model (20 Ifs = 61 messages deep) still loads, each level capturing the outer 'c'.
  const ok = loadModel(writeCase(ifChain(20)));
  let depth = 0;
  for (let g = ok.graph; g.nodes.length; g = g.nodes[0]!.subgraphs()[0]!) depth++;
  assert.equal(depth, 20);
  assert.equal(ok.graph.inputs[0]!.uses.length, 20);
});

test('raw protobuf nested 200,000 deep (types, and unknown groups) is refused, not a stack overflow', () => {
  // graph.input[0].type = sequence_type { elem_type: sequence_type { ... } }
  const typeChain = nest(200_000, [], (inner) => {
    const seq = [...tag(1, 2), ...varint(inner)];
    return [...tag(4, 2), ...varint(seq.length + inner), ...seq];
  });
  const valueInfo = [
    ...lengthDelimited(1, text('x')),
    ...tag(2, 2),
    ...varint(typeChain.length),
    ...typeChain,
  ];
  const file = writeCase(
    Uint8Array.from([
      ...IR_VERSION,
      ...OPSET,
      ...lengthDelimited(7, [...tag(11, 2), ...varint(valueInfo.length), ...valueInfo]),
    ]),
  );
  mustRefuse(file, /nested too deeply/);
  // An unknown field 99 opening 300,000 groups: skipping it recurses once per group.
  const groups = Uint8Array.from([
    ...IR_VERSION,
    ...Array.from({ length: 300_000 }, () => tag(99, 3)).flat(),
  ]);
  mustRefuse(writeCase(groups), /nested too deeply|truncated/);
});

test('a file claiming gigabytes is refused without allocating them', () => {
  const bytes = Uint8Array.from([
    ...IR_VERSION,
    ...OPSET,
    ...lengthDelimited(7, [...tag(5, 2), ...varint(0x7fffffff), ...tag(9, 2), ...varint(0x7ffffff0)]),
  ]);
  const file = writeCase(bytes, 'claims-gigabytes.onnx');
  global.gc?.();
  const before = process.memoryUsage().rss;
  for (let i = 0; i < 20; i++) mustRefuse(file, /truncated or corrupt/);
  const grown = process.memoryUsage().rss - before;
  assert.ok(grown < 64 * 2 ** 20, `rss grew by ${(grown / 2 ** 20).toFixed(1)} MiB`);

  // The real CLI, as a user runs it: one line on stderr, exit code 2, promptly.
  const start = Date.now();
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', path.join(REPO, 'bin', 'adapruner.ts'), 'inspect', file],
    { encoding: 'utf8', timeout: 60_000, cwd: REPO },
  );
  assert.equal(r.status, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(
    lines[0]!,
    new RegExp(`^adapruner: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*truncated or corrupt`),
  );
  assert.ok(Date.now() - start < 60_000);
});

test('a path that is a folder or missing is refused with a one-line error', () => {
  mustRefuse(DIR, /not a regular file/);
  mustRefuse(path.join(DIR, 'missing.onnx'), /cannot read: ENOENT/);
});
