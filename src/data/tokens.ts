import * as ort from 'onnxruntime-node';
import { UserError } from '../errors.js';
import { DataType, type Model, type Value } from '../ir/index.js';
import { readRegularFile } from '../run-files.js';
import type { BatchOptions, ImageBatch } from './batches.js';
import type { Sample, UnlabelledDataset } from './dataset.js';
import { fsErrorReason } from './error-text.js';
import type { PreprocessSpec } from './preprocess.js';

/**
 * Token data for text models (docs/data.md, "Token data"): a `.jsonl` file, one sample per line, either a bare
 * array of ids (fed to the model's token-id input) or an object keyed by the model's input names. Every sample
 * is padded (0, and 0 in a mask) or cut to one sequence length, so a batch is the model's feeds as they are.
 */

/** Largest token file read: about 50 million ids of text. */
const MAX_TOKEN_FILE_BYTES = 512 << 20;

/** The line key read as a sample's class (eval's top-1); every other key names a model input. */
export const LABEL_KEY = 'label';

type TokenType = 'int64' | 'int32' | 'bool' | 'float32';

/** One input of a text model, as the reader fills it. */
export interface TokenInput {
  name: string;
  type: TokenType;
  /** An attention mask: where a line leaves it out, 1 over the sample and 0 over the padding. */
  mask: boolean;
  /** Rows of the embedding table a Gather looks the input up in: its ids must be below it. */
  vocab?: number;
}

/** What the reader needs to know about the model: its inputs, which one a bare array feeds, the length. */
export interface TokenModel {
  inputs: TokenInput[];
  /** The input a bare array of ids feeds; undefined where several could (objects must name them). */
  ids: string | undefined;
  /** The sequence length the model fixes, or `--input-shape` gives; else the longest sample's. */
  length: number | undefined;
}

/** A text model's samples, padded to one length: what prune, eval and finetune read from a `.jsonl` file. */
export interface TokenDataset extends UnlabelledDataset {
  readonly kind: 'tokens';
  readonly inputs: readonly TokenInput[];
  /** Every sample is padded or cut to this many tokens. */
  readonly sequenceLength: number;
  /** Samples longer than `sequenceLength`, cut. */
  readonly truncated: number;
  /** Each sample's `"label"`, where every line has one (eval's top-1); else undefined. */
  readonly classLabels: Int32Array | undefined;
  /** The model's feeds for the samples at `indices`, in that order: [n, sequenceLength] each. */
  feeds(indices: ArrayLike<number>): Record<string, ort.Tensor>;
}

export function isTokenData(path: string): boolean {
  return /\.jsonl$/i.test(path);
}

export function isTokenSet(dataset: { kind: string }): dataset is TokenDataset {
  return dataset.kind === 'tokens';
}

/**
 * The pipeline's stages take a preprocessing spec; token batches ignore it (there is nothing to normalise), so
 * a token run passes this one instead of asking for a preset.
 */
export const TOKEN_SPEC: PreprocessSpec = { channels: 1, channelOrder: 'rgb', scale: 1, mean: [0], std: [1] };

const TYPES: Partial<Record<DataType, TokenType>> = {
  [DataType.INT64]: 'int64',
  [DataType.INT32]: 'int32',
  [DataType.BOOL]: 'bool',
  [DataType.FLOAT]: 'float32',
};

/**
 * The model's inputs as token data fills them. Refused in one line: an input that is not [batch, sequence] of
 * ints (a float or bool input only as a mask), a model without a token-id input, lengths that disagree.
 */
export function tokenModelOf(
  model: Model,
  inputShapes: Readonly<Record<string, readonly number[]>> | undefined,
  file: string | undefined,
): TokenModel {
  const values = model.graph.inputs.filter((v) => !v.isInitializer);
  const inputs = values.map((v) => tokenInputOf(model, v, file));
  if (!inputs.some((i) => !i.mask))
    throw new UserError(
      `token data (.jsonl) feeds token ids, and the model's inputs are ${describeInputs(values)}: give images`,
      file,
    );
  const lengths = new Set<number>();
  for (const v of values) {
    const d = inputShapes?.[v.name]?.[1] ?? v.shape?.[1];
    if (typeof d === 'number' && d > 0) lengths.add(d);
  }
  if (lengths.size > 1)
    throw new UserError(
      `the model's inputs have different sequence lengths (${[...lengths].join(', ')}); token data pads every input to one`,
      file,
    );
  return { inputs, ids: idsInput(inputs), length: [...lengths][0] };
}

function tokenInputOf(model: Model, v: Value, file: string | undefined): TokenInput {
  const elem = v.type?.kind === 'tensor' ? v.type.elemType : undefined;
  const type = elem === undefined ? undefined : TYPES[elem];
  const mask = /mask/i.test(v.name) || type === 'bool';
  if (!type || (type === 'float32' && !mask) || (v.shape && v.shape.length !== 2))
    throw new UserError(
      `token data (.jsonl) feeds [batch, sequence] token ids and masks, and the model's inputs are ${describeInputs(model.graph.inputs.filter((x) => !x.isInitializer))}`,
      file,
    );
  const vocab = mask ? undefined : vocabularyOf(v);
  return { name: v.name, type, mask, ...(vocab !== undefined && { vocab }) };
}

function describeInputs(values: Value[]): string {
  return values
    .map((v) => {
      const elem = v.type?.kind === 'tensor' ? v.type.elemType : undefined;
      return `${v.name} (${(elem !== undefined && TYPES[elem]) || `type ${elem ?? '?'}`}, rank ${v.shape?.length ?? '?'})`;
    })
    .join(', ');
}

/** The rows of the constant table a Gather looks the input up in (through a Cast), if one does. */
function vocabularyOf(v: Value): number | undefined {
  let rows: number | undefined;
  const visit = (x: Value, depth: number): void => {
    for (const { node, index } of x.uses) {
      if (node.opType === 'Cast' && depth === 0) visit(node.outputs[0]!, 1);
      const table = node.inputs[0];
      const dims = table?.initializer?.dims;
      if (node.opType === 'Gather' && index === 1 && node.attrInt('axis', 0) === 0 && dims?.length)
        rows = Math.min(rows ?? Infinity, dims[0]!);
    }
  };
  visit(v, 0);
  return rows;
}

/** The input a bare array feeds: the only id input, else `input_ids`, else the one with the largest vocabulary. */
function idsInput(inputs: TokenInput[]): string | undefined {
  const ids = inputs.filter((i) => !i.mask);
  if (ids.length === 1) return ids[0]!.name;
  if (ids.some((i) => i.name === 'input_ids')) return 'input_ids';
  const byVocab = ids.filter((i) => i.vocab !== undefined).sort((a, b) => b.vocab! - a.vocab!);
  return byVocab.length && (byVocab.length === 1 || byVocab[0]!.vocab! > byVocab[1]!.vocab!)
    ? byVocab[0]!.name
    : undefined;
}

/** One parsed line: the arrays it gives by input name, its length, its label. */
interface ParsedLine {
  line: number;
  values: Map<string, number[]>;
  length: number;
  label?: number;
}

/** Reads and checks a `.jsonl` token file against the model's inputs (see the module comment). */
export function openTokens(path: string, model: TokenModel): TokenDataset {
  let text: string;
  try {
    text = readRegularFile(path, MAX_TOKEN_FILE_BYTES).toString('utf8');
  } catch (e) {
    throw new UserError(`cannot read the token data (${fsErrorReason(e)})`, path);
  }
  const lines: ParsedLine[] = [];
  text.split('\n').forEach((raw, i) => {
    const body = raw.trim();
    if (body) lines.push(parseLine(body, i + 1, model, path));
  });
  if (lines.length === 0)
    throw new UserError('has no samples: expected one JSON array or object a line', path);
  const withLabel = lines.filter((l) => l.label !== undefined);
  if (withLabel.length > 0 && withLabel.length < lines.length) {
    const odd = lines.find((l) => l.label === undefined)!;
    throw new UserError(
      `line ${odd.line}: has no "${LABEL_KEY}", and line ${withLabel[0]!.line} has one: give one on every line or on none`,
      path,
    );
  }
  // A loop, not Math.max(...): spreading a million lines overflows the call stack.
  const T = model.length ?? lines.reduce((m, l) => Math.max(m, l.length), 0);
  const columns = model.inputs.map((input) => fillColumn(input, lines, T));
  return {
    kind: 'tokens',
    labelled: false,
    labels: undefined,
    classNames: undefined,
    path,
    length: lines.length,
    inputs: model.inputs,
    sequenceLength: T,
    truncated: lines.filter((l) => l.length > T).length,
    classLabels: withLabel.length ? Int32Array.from(lines, (l) => l.label!) : undefined,
    describe: (i) => `${path}:${lines[i]!.line}`,
    load: (): Promise<Sample> => {
      throw new Error('token data has no images: read it with batches(), which yields its feeds');
    },
    feeds: (indices) => {
      const feeds: Record<string, ort.Tensor> = {};
      model.inputs.forEach((input, c) => (feeds[input.name] = batchOf(columns[c]!, input.type, indices, T)));
      return feeds;
    },
  };
}

type Column = BigInt64Array | Int32Array | Uint8Array | Float32Array;

function parseLine(body: string, line: number, model: TokenModel, path: string): ParsedLine {
  const fail = (why: string): never => {
    throw new UserError(`line ${line}: ${why}`, path);
  };
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    fail('not valid JSON');
  }
  const values = new Map<string, number[]>();
  let label: number | undefined;
  if (Array.isArray(value)) {
    if (model.ids === undefined)
      fail(
        `a bare array of ids needs a model with one token-id input; give an object keyed by input name (${model.inputs.map((i) => i.name).join(', ')})`,
      );
    values.set(model.ids!, value);
  } else if (value !== null && typeof value === 'object') {
    for (const [key, v] of Object.entries(value)) {
      if (key === LABEL_KEY && !model.inputs.some((i) => i.name === key)) {
        if (!(Number.isSafeInteger(v) && (v as number) >= 0)) fail(`"${LABEL_KEY}" is not a class index`);
        label = v as number;
      } else if (!model.inputs.some((i) => i.name === key))
        fail(`"${key}" is not an input of the model (inputs: ${model.inputs.map((i) => i.name).join(', ')})`);
      else if (!Array.isArray(v)) fail(`"${key}" is not an array`);
      else values.set(key, v);
    }
    const needed = model.ids ? [model.ids] : model.inputs.filter((i) => !i.mask).map((i) => i.name);
    const missing = needed.find((n) => !values.has(n));
    if (missing !== undefined) fail(`gives no "${missing}"`);
  } else fail('is neither an array of ids nor an object keyed by input name');
  const lengths = [...values.values()].map((a) => a.length);
  if (lengths.some((n) => n !== lengths[0]))
    fail(`its arrays differ in length (${[...values].map(([k, a]) => `${k} ${a.length}`).join(', ')})`);
  if (lengths[0] === 0) fail('has no tokens');
  for (const [name, ids] of values)
    checkValues(
      model.inputs.find((i) => i.name === name)!,
      ids,
      fail,
    );
  return { line, values, length: lengths[0]!, ...(label !== undefined && { label }) };
}

function checkValues(input: TokenInput, ids: unknown[], fail: (why: string) => never): void {
  for (const [k, x] of ids.entries()) {
    if (!Number.isSafeInteger(x)) fail(`"${input.name}" has a non-integer at position ${k + 1}`);
    const id = x as number;
    if (input.mask && id !== 0 && id !== 1)
      fail(`"${input.name}" has ${id} at position ${k + 1}: a mask is 0 or 1`);
    if (input.vocab !== undefined && (id < 0 || id >= input.vocab))
      fail(
        `id ${id} in "${input.name}" is outside the vocabulary: the model's embedding has ${input.vocab} rows (0 to ${input.vocab - 1})`,
      );
    if (input.type === 'int32' && (id < -(2 ** 31) || id >= 2 ** 31))
      fail(`"${input.name}" has ${id} at position ${k + 1}, which does not fit int32`);
  }
}

/**
 * One input's values of every sample, [samples, T]: what the line gives, cut to T, then padded with 0. A mask
 * the line leaves out is 1 over the sample's tokens.
 */
function fillColumn(input: TokenInput, lines: ParsedLine[], T: number): Column {
  const column = makeColumn(input.type, lines.length * T);
  lines.forEach((l, s) => {
    const given = l.values.get(input.name);
    const n = Math.min(l.length, T);
    for (let t = 0; t < n; t++) {
      const x = given ? given[t]! : input.mask ? 1 : 0;
      if (column instanceof BigInt64Array) column[s * T + t] = BigInt(x);
      else column[s * T + t] = x;
    }
  });
  return column;
}

function makeColumn(type: TokenType, n: number): Column {
  if (type === 'int64') return new BigInt64Array(n);
  if (type === 'int32') return new Int32Array(n);
  if (type === 'bool') return new Uint8Array(n);
  return new Float32Array(n);
}

function batchOf(column: Column, type: TokenType, indices: ArrayLike<number>, T: number): ort.Tensor {
  const out = makeColumn(type, indices.length * T);
  for (let k = 0; k < indices.length; k++)
    out.set(column.subarray(indices[k]! * T, indices[k]! * T + T) as never, k * T);
  return new ort.Tensor(type, out as never, [indices.length, T]);
}

/** The static shapes a token set feeds, batch 1: what `--input-shape` would give for every input. */
export function tokenInputShapes(dataset: TokenDataset): Record<string, number[]> {
  return Object.fromEntries(dataset.inputs.map((i) => [i.name, [1, dataset.sequenceLength]]));
}

/**
 * batches() of a token set: the feeds of each batch, an empty image of shape [n, 0, 0, 0] and the indices. The
 * labels stay with the set (`classLabels`): the pipeline treats it as unlabelled.
 */
export async function* tokenBatches(
  dataset: TokenDataset,
  options: Pick<BatchOptions, 'batchSize' | 'indices'>,
): AsyncGenerator<ImageBatch> {
  const total = options.indices?.length ?? dataset.length;
  for (let first = 0; first < total; first += options.batchSize) {
    const n = Math.min(options.batchSize, total - first);
    const indices = Int32Array.from({ length: n }, (_, k) =>
      options.indices ? options.indices[first + k]! : first + k,
    );
    yield { images: new Float32Array(0), n, shape: [n, 0, 0, 0], indices, feeds: dataset.feeds(indices) };
  }
}
