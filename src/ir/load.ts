import fs from 'node:fs';
import path from 'node:path';
import Long from 'long';
import { UserError } from '../errors.js';
import { noteInput, readRegularFile } from '../run-files.js';
import { AttributeType, type Attribute, type Int } from './attribute.js';
import { readExternal, resolveExternalLocation, parseExternalEntries } from './external-data.js';
import { DataType, arrayLength, byteLength, dataTypeName, storageOf } from './data-type.js';
import { Graph, Node, Value } from './graph.js';
import { LoadedFile, fileIdentity } from './loaded-file.js';
import { Model } from './model.js';
import { ModelProtoType } from './onnx-schema.js';
import {
  Tensor,
  toSafeNumber,
  type ByteSource,
  type ExternalReader,
  type TensorProtoLike,
} from './tensor.js';
import type { Dim, ValueType } from './types.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- decoded protobuf messages are dynamically shaped */
type Msg = Record<string, any>;

export interface LoadOptions {
  /** Folder that external data locations are relative to (default: the model file's folder). */
  baseDir?: string;
  /** Name used in error messages when loading from bytes. */
  name?: string;
  /** The file `bytes` were read from: large raw_data stays a view of them, tracked there (LoadedFile). */
  loaded?: LoadedFile;
}

/** Largest model file we agree to read: protobuf itself caps messages at 2 GiB. */
const MAX_MODEL_BYTES = 2 ** 31;

/** Reads an ONNX file. Any problem with the file becomes a one-line UserError naming it. */
export function loadModel(file: string, options: LoadOptions = {}): Model {
  let bytes: Buffer;
  let loaded: LoadedFile | undefined;
  try {
    const st = fs.statSync(file, { bigint: true });
    if (!st.isFile()) throw new UserError('not a regular file', file);
    if (st.size > MAX_MODEL_BYTES)
      throw new UserError(`file is ${st.size} bytes, over the 2 GiB protobuf limit`, file);
    bytes = readRegularFile(file, MAX_MODEL_BYTES);
    // The weights stay views of `bytes`; once released they are read back from the file, which must then be
    // the same file, unchanged (no identity when it changed while being read: then it is never released).
    const after = fileIdentity(fs.statSync(file, { bigint: true }));
    const before = fileIdentity(st);
    const same = (Object.keys(before) as (keyof typeof before)[]).every((k) => before[k] === after[k]);
    loaded = new LoadedFile(fs.realpathSync(file), bytes, same ? after : undefined);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, file);
  }
  noteInput(file, 'the model');
  const model = decodeModel(bytes, {
    baseDir: options.baseDir ?? path.dirname(path.resolve(file)),
    name: file,
    loaded,
  });
  model.sourcePath = file;
  return model;
}

/** Decodes an ONNX model from bytes (the bytes are referenced, not copied: raw tensor data stays a view). */
export function decodeModel(bytes: Uint8Array, options: LoadOptions = {}): Model {
  const where = options.name ?? '<bytes>';
  if (bytes.length === 0) throw new UserError('empty file, not an ONNX model', where);
  let proto: Msg;
  try {
    proto = ModelProtoType.decode(bytes) as unknown as Msg;
  } catch (e) {
    throw new UserError(`not a valid ONNX protobuf (${describeDecodeError(e)})`, where);
  }
  try {
    copySmallViews(proto, bytes.buffer);
    const model = buildModel(proto, options.baseDir, where, options.loaded);
    model.loadedFrom = options.loaded;
    return model;
  } catch (e) {
    if (e instanceof UserError) throw e;
    if (e instanceof RangeError && /call stack/i.test(e.message))
      throw new UserError(`model is nested too deeply to read (${e.message})`, where);
    const err = e as Error & { node?: string };
    throw new UserError(err.message, where, err.node);
  }
}

function describeDecodeError(e: unknown): string {
  const msg = (e as Error).message ?? String(e);
  if ((e instanceof RangeError && /call stack/i.test(msg)) || /max depth exceeded/.test(msg))
    return `nested too deeply (${msg})`;
  // protobufjs reports a read past the end (a truncated file, or a length prefix larger than the file) this way.
  if (/index out of range/.test(msg)) return `truncated or corrupt: ${msg.split('\n')[0]!}`;
  return msg.split('\n')[0]!;
}

/**
 * Copies every bytes field of the decoded message that views `buffer`, except raw_data (the weights, which
 * stay views and are detached by LoadedFile.release): a string attribute left as a view would keep the whole
 * file's buffer alive after the weights let it go.
 */
function copySmallViews(message: unknown, buffer: ArrayBufferLike, depth = 0): void {
  if (depth > 200 || message === null || typeof message !== 'object') return;
  const m = message as Msg;
  for (const key of Array.isArray(m) ? m.keys() : Object.keys(m)) {
    const v = m[key as keyof typeof m];
    if (v instanceof Uint8Array) {
      if (v.buffer === buffer && key !== 'raw_data')
        m[key as keyof typeof m] = Uint8Array.prototype.slice.call(v);
    } else if (v !== null && typeof v === 'object' && !Long.isLong(v)) copySmallViews(v, buffer, depth + 1);
  }
}

function has(m: Msg, field: string): boolean {
  return Object.prototype.hasOwnProperty.call(m, field);
}

function buildModel(p: Msg, baseDir: string | undefined, where: string, origin?: ByteSource): Model {
  if (!p.graph) throw new Error('the model has no graph');
  // Required since IR version 3; a file cut short after its graph loses it, so this also catches truncation.
  if (!p.opset_import?.length) throw new Error('the model imports no operator set (opset_import is empty)');
  // External data is read when a tensor is first used, after loading: its errors still name the model file.
  const reader: ExternalReader | undefined = baseDir
    ? (entries, name, expected) => {
        try {
          return readExternal(baseDir, entries, name, expected);
        } catch (e) {
          if (e instanceof UserError) throw e;
          throw new UserError((e as Error).message, where);
        }
      }
    : undefined;
  const graph = buildGraph(p.graph, undefined, reader, baseDir, origin);
  const model = new Model(graph);
  if (has(p, 'ir_version')) model.irVersion = toSafeNumber(p.ir_version, 'ir_version');
  model.opsetImports = (p.opset_import ?? []).map((o: Msg) => ({
    domain: o.domain ?? '',
    version: toSafeNumber(o.version ?? 0, 'opset version'),
    ...(has(o, 'domain') && o.domain === '' ? { explicitDomain: true } : {}),
  }));
  if (has(p, 'producer_name')) model.producerName = p.producer_name;
  if (has(p, 'producer_version')) model.producerVersion = p.producer_version;
  if (has(p, 'domain')) model.domain = p.domain;
  if (has(p, 'model_version')) model.modelVersion = toSafeNumber(p.model_version, 'model_version');
  if (has(p, 'doc_string')) model.docString = p.doc_string;
  model.metadata = (p.metadata_props ?? []).map((e: Msg) => ({ key: e.key ?? '', value: e.value ?? '' }));
  for (const field of ['training_info', 'functions', 'configuration'])
    if (p[field]?.length) model.extra[field] = p[field];
  return model;
}

/** Builds one graph. `outer` resolves names the graph uses but does not define (subgraph captures). */
function buildGraph(
  gp: Msg,
  outer: Graph | undefined,
  reader: ExternalReader | undefined,
  baseDir: string | undefined,
  origin?: ByteSource,
): Graph {
  let depth = 0;
  for (let o = outer; o; o = o.parent) depth++;
  if (depth > MAX_SUBGRAPH_DEPTH)
    throw new Error(`subgraphs are nested more than ${MAX_SUBGRAPH_DEPTH} deep`);
  const g = new Graph();
  g.parent = outer;
  g.name = gp.name ?? '';
  for (const field of ['doc_string', 'sparse_initializer', 'quantization_annotation', 'metadata_props']) {
    const v = gp[field];
    if (Array.isArray(v) ? v.length > 0 : has(gp, field)) g.extra[field] = v;
  }
  const local = new Map<string, Value>();
  const define = (v: Value, what: string): void => {
    if (local.has(v.name) && local.get(v.name) !== v)
      throw new Error(`${what} '${v.name}' is defined twice in graph '${g.name}'`);
    local.set(v.name, v);
  };

  for (const vi of gp.input ?? []) {
    const v = valueFromInfo(vi);
    g.inputs.push(v);
    define(v, 'input');
  }
  for (const tp of gp.initializer ?? []) {
    const tensor = Tensor.fromProto(tp as TensorProtoLike, reader, origin);
    checkTensorData(tp, tensor);
    if (tensor.isExternal && baseDir) checkExternalLocation(tp, baseDir);
    const existing = local.get(tensor.name);
    // An initializer may share its name with a graph input (its default, IR < 4), never with another one:
    // readers disagree on which of two copies wins.
    if (existing?.initializer)
      throw new Error(`initializer '${tensor.name}' is defined twice in graph '${g.name}'`);
    const v =
      existing ??
      new Value(tensor.name, { kind: 'tensor', elemType: tensor.dataType, shape: [...tensor.dims] });
    v.initializer = tensor;
    g.initializers.push(v);
    if (!existing) define(v, 'initializer');
  }
  for (const sp of gp.sparse_initializer ?? []) {
    const values: Msg = sp.values ?? {};
    // Sparse tensors are carried as their messages, never read here: their locations get the same checks.
    for (const part of [sp.values, sp.indices])
      if (part && (part.data_location === 1 || part.external_data?.length)) {
        if (!baseDir) throw new Error(`sparse initializer '${values.name ?? ''}' refers to external data`);
        checkExternalLocation(part, baseDir);
      }
    const dims = (sp.dims ?? []).map((d: Long | number) => toSafeNumber(d, 'sparse tensor dimension'));
    if (dims.some((d: number) => d < 0))
      throw new Error(`sparse initializer '${values.name ?? ''}' has a negative dimension`);
    if (local.get(values.name ?? '')?.initializer)
      throw new Error(`sparse initializer '${values.name ?? ''}' has the name of an initializer`);
    const v =
      local.get(values.name ?? '') ??
      new Value(values.name ?? '', { kind: 'tensor', elemType: values.data_type ?? 0, shape: dims });
    g.sparseInitializers.push(v);
    if (!local.has(v.name)) define(v, 'sparse initializer');
  }
  // Outputs first, so inputs can refer to values produced later (files are not always sorted).
  const nodes: Node[] = [];
  for (const np of gp.node ?? []) {
    const outs = (np.output ?? []).map((name: string) => {
      const v = new Value(name);
      if (name !== '') define(v, 'value');
      return v;
    });
    const node = new Node(np.op_type ?? '', [], outs, np.name ?? '', np.domain ?? '');
    nodes.push(node);
  }
  const resolve = (name: string, nodeName: string): Value => {
    const v = local.get(name) ?? lookupOuter(outer, name);
    if (!v)
      throw Object.assign(new Error(`input '${name}' is not defined by any node, input or initializer`), {
        node: nodeName,
      });
    return v;
  };
  (gp.node ?? []).forEach((np: Msg, k: number) => {
    const node = nodes[k]!;
    for (const name of np.input ?? []) node.appendInput(name === '' ? undefined : resolve(name, node.name));
    if (has(np, 'overload')) node.overload = np.overload;
    const extra: Msg = {};
    for (const field of ['doc_string', 'metadata_props', 'device_configurations']) {
      const v = np[field];
      if (Array.isArray(v) ? v.length > 0 : has(np, field)) extra[field] = v;
    }
    if (has(np, 'domain') && np.domain === '') extra.explicitEmptyDomain = true;
    if (Object.keys(extra).length) node.extra = extra;
    g.addNode(node);
    for (const ap of np.attribute ?? []) {
      try {
        node.attributes.set(ap.name ?? '', buildAttribute(ap, g, reader, baseDir, origin));
      } catch (e) {
        throw Object.assign(e as Error, { node: (e as { node?: string }).node ?? node.name });
      }
    }
    for (const sub of node.subgraphs()) sub.parent = g;
  });
  for (const vi of gp.output ?? []) {
    const v = local.get(vi.name) ?? lookupOuter(outer, vi.name);
    if (!v) throw new Error(`graph output '${vi.name}' is not defined`);
    applyInfo(v, vi);
    g.outputs.push(v);
  }
  const described = new Set<string>();
  for (const vi of gp.value_info ?? []) {
    if (described.has(vi.name ?? ''))
      throw new Error(`value_info describes '${vi.name ?? ''}' twice in graph '${g.name}'`);
    described.add(vi.name ?? '');
    const v = local.get(vi.name) ?? new Value(vi.name ?? '');
    applyInfo(v, vi);
    g.valueInfo.push(v);
  }
  return g;
}

/** Deeper If/Loop/Scan nesting than this is refused (real models nest a handful deep; recursion must stay bounded). */
const MAX_SUBGRAPH_DEPTH = 64;

function checkedTensor(tp: Msg, reader: ExternalReader | undefined, origin?: ByteSource): Tensor {
  const t = Tensor.fromProto(tp as TensorProtoLike, reader, origin);
  checkTensorData(tp, t);
  return t;
}

/**
 * Checks at load time that an inline tensor's data matches its dims and type, so a corrupt file fails here with
 * the file named, not later inside a pass. External data is checked when it is read.
 */
function checkTensorData(tp: Msg, t: Tensor): void {
  const name = t.name;
  const size = t.dims.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(size))
    throw new Error(`tensor '${name}' has dims [${t.dims.join(', ')}]: too many elements`);
  if (t.dataType === DataType.STRING) {
    const n = tp.string_data?.length ?? 0;
    if (n !== size && !(n === 0 && size === 0))
      throw new Error(`tensor '${name}' holds ${n} strings, expected ${size}`);
    return;
  }
  if (!storageOf(t.dataType))
    throw new Error(`tensor '${name}' has unsupported data type ${dataTypeName(t.dataType)}`);
  if (tp.data_location === 1) return;
  if (tp.raw_data?.length) {
    const expected = byteLength(t.dataType, size);
    if (tp.raw_data.length !== expected)
      throw new Error(
        `tensor '${name}' has ${tp.raw_data.length} bytes of data, expected ${expected} for dims [${t.dims.join(', ')}] of ${dataTypeName(t.dataType)}`,
      );
    return;
  }
  const field = ['float_data', 'int32_data', 'int64_data', 'double_data', 'uint64_data'].find(
    (f) => tp[f]?.length,
  );
  const n = field ? tp[field].length : 0;
  const expected = arrayLength(t.dataType, size);
  if (n !== expected)
    throw new Error(
      `tensor '${name}' holds ${n} values, expected ${expected} for dims [${t.dims.join(', ')}]`,
    );
}

function lookupOuter(g: Graph | undefined, name: string): Value | undefined {
  for (; g; g = g.parent) {
    const v = g.valueByName().get(name);
    if (v) return v;
  }
  return undefined;
}

function checkExternalLocation(tp: Msg, baseDir: string): void {
  const entries = new Map<string, string>(
    (tp.external_data ?? []).map((e: Msg) => [e.key ?? '', e.value ?? '']),
  );
  const e = parseExternalEntries(entries, tp.name ?? '');
  resolveExternalLocation(baseDir, e.location);
}

function valueFromInfo(vi: Msg): Value {
  const v = new Value(vi.name ?? '');
  applyInfo(v, vi);
  return v;
}

function applyInfo(v: Value, vi: Msg): void {
  if (vi.type) v.type = typeFromProto(vi.type);
  const extra: Msg = {};
  if (has(vi, 'doc_string')) extra.doc_string = vi.doc_string;
  if (vi.metadata_props?.length) extra.metadata_props = vi.metadata_props;
  if (!has(vi, 'type')) extra.noType = true;
  if (Object.keys(extra).length) v.infoExtra = extra;
}

/** Tensor types become dims; anything with denotations or of another kind is carried as its message. */
export function typeFromProto(tp: Msg): ValueType {
  const tt = tp.tensor_type;
  if (!tt || has(tp, 'denotation')) return { kind: 'other', proto: tp };
  const elemType = tt.elem_type ?? 0;
  if (!tt.shape) return { kind: 'tensor', elemType, shape: undefined };
  const shape: Dim[] = [];
  for (const d of tt.shape.dim ?? []) {
    if (has(d, 'denotation')) return { kind: 'other', proto: tp };
    if (has(d, 'dim_value')) {
      const n = toSafeNumber(d.dim_value as Long | number, 'dimension');
      if (n < 0) throw new Error(`negative dimension ${n}`);
      shape.push(n);
    } else if (has(d, 'dim_param')) shape.push(d.dim_param);
    else shape.push(null);
  }
  return { kind: 'tensor', elemType, shape };
}

function toInt(v: Long | number): Int {
  if (typeof v === 'number') return v;
  const n = v.toNumber();
  return Number.isSafeInteger(n) ? n : BigInt(v.toString());
}

function buildAttribute(
  ap: Msg,
  g: Graph,
  reader: ExternalReader | undefined,
  baseDir: string | undefined,
  origin?: ByteSource,
): Attribute {
  const extra: Msg = {};
  if (has(ap, 'doc_string')) extra.doc_string = ap.doc_string;
  if (has(ap, 'ref_attr_name')) extra.ref_attr_name = ap.ref_attr_name;
  const withExtra = <T extends Attribute>(a: T): T => (Object.keys(extra).length ? { ...a, extra } : a);
  const type: AttributeType = has(ap, 'type') ? ap.type : inferAttributeType(ap);
  const sub = (gp: Msg): Graph => buildGraph(gp, g, reader, baseDir, origin);
  switch (type) {
    case AttributeType.FLOAT:
      return withExtra({ type, value: ap.f ?? 0 });
    case AttributeType.INT:
      return withExtra({ type, value: toInt(ap.i ?? 0) });
    case AttributeType.STRING:
      return withExtra({ type, value: ap.s ?? new Uint8Array() });
    case AttributeType.TENSOR:
      return withExtra({ type, value: checkedTensor(ap.t ?? {}, reader, origin) });
    case AttributeType.GRAPH:
      return withExtra({ type, value: sub(ap.g ?? {}) });
    case AttributeType.FLOATS:
      return withExtra({ type, value: [...(ap.floats ?? [])] });
    case AttributeType.INTS:
      return withExtra({ type, value: (ap.ints ?? []).map(toInt) });
    case AttributeType.STRINGS:
      return withExtra({ type, value: [...(ap.strings ?? [])] });
    case AttributeType.TENSORS:
      return withExtra({ type, value: (ap.tensors ?? []).map((t: Msg) => checkedTensor(t, reader, origin)) });
    case AttributeType.GRAPHS:
      return withExtra({ type, value: (ap.graphs ?? []).map(sub) });
    default:
      // Sparse tensors, type protos, and untyped reference attributes travel as their whole message.
      return { type: AttributeType.UNDEFINED, value: ap } as Attribute;
  }
}

/** IR version 1 files carry no type discriminator: infer it from the field that is set. */
function inferAttributeType(ap: Msg): AttributeType {
  if (has(ap, 'f')) return AttributeType.FLOAT;
  if (has(ap, 'i')) return AttributeType.INT;
  if (has(ap, 's')) return AttributeType.STRING;
  if (has(ap, 't')) return AttributeType.TENSOR;
  if (has(ap, 'g')) return AttributeType.GRAPH;
  if (ap.floats?.length) return AttributeType.FLOATS;
  if (ap.ints?.length) return AttributeType.INTS;
  if (ap.strings?.length) return AttributeType.STRINGS;
  if (ap.tensors?.length) return AttributeType.TENSORS;
  if (ap.graphs?.length) return AttributeType.GRAPHS;
  return AttributeType.UNDEFINED;
}

export { Long };
