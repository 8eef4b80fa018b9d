/**
 * Token data for text models (docs/data.md, "Token data"): `.jsonl` lines read against the model's inputs
 * (bare arrays to the token-id input, objects by input name), padded or cut to one sequence length, with masks
 * and token types filled in; bad lines refused in one line naming the file and the line.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { batches } from '../src/data/batches.js';
import { openDataset } from '../src/data/open.js';
import { TOKEN_SPEC, tokenModelOf, type TokenDataset } from '../src/data/tokens.js';
import { loadModel } from '../src/ir/index.js';
import { fixture, runCli, tmpDir } from './helpers.js';

const BERT_MASK = fixture('transformers/bert_mask.onnx');
const model = loadModel(BERT_MASK);

function write(dir: string, name: string, lines: readonly unknown[]): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n'));
  return file;
}

async function open(file: string, shapes?: Record<string, number[]>): Promise<TokenDataset> {
  return (await openDataset(file, {
    labels: 'optional',
    tokens: tokenModelOf(model, shapes, BERT_MASK),
  })) as TokenDataset;
}

const ints = (t: { data: unknown }): number[] => Array.from(t.data as BigInt64Array, Number);

describe('token data (.jsonl)', () => {
  const dir = tmpDir();

  it('reads the model: the vocabulary of each id input, the mask, the input a bare array feeds', () => {
    const t = tokenModelOf(model, undefined, BERT_MASK);
    assert.equal(t.ids, 'input_ids');
    assert.equal(t.length, undefined);
    assert.deepEqual(
      t.inputs.map((i) => [i.name, i.type, i.mask, i.vocab]),
      [
        ['input_ids', 'int64', false, 100],
        ['token_type_ids', 'int64', false, 2],
        ['attention_mask', 'int64', true, undefined],
      ],
    );
    const given = { input_ids: [1, 8], token_type_ids: [1, 8], attention_mask: [1, 8] };
    assert.equal(tokenModelOf(model, given, BERT_MASK).length, 8);
  });

  it('pads bare arrays and objects to the longest sample: ids 0, token types 0, the mask 1 over the sample', async () => {
    const file = write(dir, 'a.jsonl', [
      [5, 6, 7],
      '',
      { input_ids: [9, 8, 7, 6, 5], token_type_ids: [0, 0, 1, 1, 1] },
      { input_ids: [1, 2], attention_mask: [1, 0] },
    ]);
    const data = await open(file);
    assert.equal(data.length, 3);
    assert.equal(data.sequenceLength, 5);
    assert.equal(data.describe(1), `${file}:3`); // blank lines are skipped, the numbers are the file's
    const got = [];
    for await (const b of batches(data, { spec: TOKEN_SPEC, batchSize: 2, indices: [2, 0, 1] })) got.push(b);
    assert.equal(got.length, 2);
    const f = got[0]!.feeds!;
    assert.deepEqual(f.input_ids!.dims, [2, 5]);
    assert.equal(f.input_ids!.type, 'int64');
    assert.deepEqual(ints(f.input_ids!), [1, 2, 0, 0, 0, 5, 6, 7, 0, 0]);
    assert.deepEqual(ints(f.token_type_ids!), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(ints(f.attention_mask!), [1, 0, 0, 0, 0, 1, 1, 1, 0, 0]);
    assert.deepEqual(ints(got[1]!.feeds!.token_type_ids!), [0, 0, 1, 1, 1]);
    assert.deepEqual(ints(got[1]!.feeds!.attention_mask!), [1, 1, 1, 1, 1]);
    assert.deepEqual([...got[0]!.indices], [2, 0]);
    assert.equal(got[0]!.images.length, 0);
  });

  it('cuts samples to the length --input-shape gives, and reads a "label" on every line', async () => {
    const file = write(dir, 'b.jsonl', [
      { input_ids: [1, 2, 3, 4, 5, 6], label: 2 },
      { input_ids: [7], label: 0 },
    ]);
    const shapes = { input_ids: [1, 4], token_type_ids: [1, 4], attention_mask: [1, 4] };
    const data = await open(file, shapes);
    assert.equal(data.sequenceLength, 4);
    assert.equal(data.truncated, 1);
    assert.deepEqual([...data.classLabels!], [2, 0]);
    assert.equal(data.labelled, false); // the pipeline reads it as unlabelled: fidelity and distillation
    assert.deepEqual(ints(data.feeds([0, 1]).input_ids!), [1, 2, 3, 4, 7, 0, 0, 0]);
  });

  const refusals: [string, unknown[], RegExp][] = [
    [
      'an id out of the vocabulary',
      [
        [1, 2],
        [3, 100],
      ],
      /line 2: id 100 in "input_ids" is outside the vocabulary: the model's embedding has 100 rows \(0 to 99\)/,
    ],
    [
      'a token type out of its table',
      [{ input_ids: [1], token_type_ids: [2] }],
      /line 1: id 2 in "token_type_ids" is outside the vocabulary: the model's embedding has 2 rows/,
    ],
    ['a negative id', [[-1]], /line 1: id -1 in "input_ids" is outside the vocabulary/],
    ['a line that is not JSON', [[1], '[2, 3', [4]], /line 2: not valid JSON$/],
    [
      'an unknown key',
      [{ input_ids: [1], ids: [2] }],
      /line 1: "ids" is not an input of the model \(inputs: input_ids, token_type_ids, attention_mask\)/,
    ],
    [
      'a mask value other than 0 or 1',
      [{ input_ids: [1, 2], attention_mask: [1, 2] }],
      /line 1: "attention_mask" has 2 at position 2: a mask is 0 or 1/,
    ],
    [
      'arrays of different lengths',
      [{ input_ids: [1, 2], attention_mask: [1] }],
      /line 1: its arrays differ in length \(input_ids 2, attention_mask 1\)/,
    ],
    ['no tokens', [[1], []], /line 2: has no tokens/],
    ['a fraction', [[1.5]], /line 1: "input_ids" has a non-integer at position 1/],
    ['an object without the ids', [{ token_type_ids: [0] }], /line 1: gives no "input_ids"/],
    ['a number', [[1], 7], /line 2: is neither an array of ids nor an object keyed by input name/],
    [
      'labels on some lines only',
      [{ input_ids: [1], label: 1 }, [2]],
      /line 2: has no "label", and line 1 has one/,
    ],
    [
      'a label that is no class index',
      [{ input_ids: [1], label: 'a' }],
      /line 1: "label" is not a class index/,
    ],
  ];
  for (const [what, lines, message] of refusals)
    it(`refuses ${what} in one line naming the file and the line`, async () => {
      const file = write(dir, `${what.replace(/\W+/g, '-')}.jsonl`, lines);
      await assert.rejects(open(file), (e: Error) => {
        assert.match(e.message, message);
        assert.ok(e.message.startsWith(`${file}: line `), e.message);
        assert.equal(e.name, 'UserError');
        return true;
      });
    });

  it('refuses an empty file, token data where images are read, and an image model', async () => {
    await assert.rejects(open(write(dir, 'empty.jsonl', ['', ''])), /empty\.jsonl: has no samples/);
    const file = write(dir, 'ok.jsonl', [[1, 2]]);
    await assert.rejects(
      openDataset(file, { labels: 'optional' }),
      /ok\.jsonl: is token data \(\.jsonl\), which this command does not read/,
    );
    assert.throws(
      () => tokenModelOf(loadModel(fixture('vgg.onnx')), undefined, 'vgg.onnx'),
      /vgg\.onnx: token data \(\.jsonl\) feeds \[batch, sequence\] token ids and masks, and the model's inputs are input \(float32, rank 4\)/,
    );
  });

  it('the CLI: a bad line is one line on stderr and exit code 2; image flags with token data are refused', async () => {
    const bad = write(dir, 'bad.jsonl', [
      [1, 2],
      [3, 400],
    ]);
    const r = await runCli(['eval', BERT_MASK, '--data', bad, '--against', BERT_MASK]);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr.trim(),
      `adapruner: ${bad}: line 2: id 400 in "input_ids" is outside the vocabulary: the model's embedding has 100 rows (0 to 99)`,
    );
    const good = write(dir, 'good.jsonl', [
      [1, 2],
      [3, 4],
    ]);
    const p = await runCli([
      'prune',
      BERT_MASK,
      '--flops',
      '0.5',
      '--data',
      good,
      '--preset',
      'cifar10',
      '-o',
      path.join(dir, 'x.onnx'),
    ]);
    assert.equal(p.code, 2);
    assert.match(p.stderr, /--preset applies to images; token data \(\.jsonl\) has no preprocessing/);
    assert.ok(!fs.existsSync(path.join(dir, 'x.onnx')));
  });
});
