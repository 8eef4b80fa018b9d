import fs from 'node:fs';
import path from 'node:path';
import Long from 'long';
import { UserError } from '../errors.js';
import { AttributeType, type Attribute, type Int } from './attribute.js';
import { resolveExternalLocation } from './external-data.js';
import type { Graph, Value } from './graph.js';
import type { Model } from './model.js';
import type protobuf from 'protobufjs';
import { ModelProtoType, TensorProtoType, schemaRoot } from './onnx-schema.js';

const GraphProtoType = schemaRoot.lookupType('onnx.GraphProto');
import type { Tensor, TensorProtoLike } from './tensor.js';
import type { ValueType } from './types.js';
import { StagedWrites } from '../atomic-write.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- protobuf messages are built as plain objects */
type Msg = Record<string, any>;

export interface SaveOptions {
  /**
   * Store initializers in a separate file next to the model (`location`, relative to the model's folder).
   * Chosen automatically when the model would pass protobuf's 2 GiB limit.
   */
  externalData?: { location: string; threshold?: number };
  /** Stage the files here instead of renaming them into place at once (see StagedWrites). */
  staged?: StagedWrites;
}

const PROTOBUF_LIMIT = 2 ** 31 - 1;

/**
 * Encodes the model; external initializers are inlined (use saveModel to write them beside the file). The
 * bytes of `ModelProtoType.encode`, assembled once in a buffer of the exact size (serializeModelCompact).
 */
export function serializeModel(model: Model): Uint8Array {
  return serializeModelCompact(model);
}

/**
 * The bytes of `ModelProtoType.encode(model)`, assembled once in a buffer of the exact size from the pieces save
 * writes: encoding in one go grows a buffer and copies it in finish(), holding about 3x the model.
 *
 * With `rebase`, the main graph's large initializers are then pointed at their bytes inside the result
 * (Tensor.rebase), so that the model and the bytes handed to onnxruntime are one copy, not two: what the model
 * holds, its data and what it saves are unchanged, and the weights it viewed before (a loaded file, sliced
 * arrays) are no longer referenced by it.
 */
export function serializeModelCompact(model: Model, options: { rebase?: boolean } = {}): Uint8Array {
  const proto = modelToProto(model, undefined);
  const streamed: { index: number; message: Msg }[] = [];
  const pieces = encodePieces(proto, streamed);
  const out = Buffer.allocUnsafeSlow(length(pieces));
  let offset = 0;
  const at = new Map<Uint8Array, number>();
  for (const p of pieces) {
    at.set(p, offset);
    out.set(p, offset);
    offset += p.length;
  }
  // A Buffer, as protobufjs's encode gives under node (a model decoded from it holds Buffer views, too).
  const bytes = out;
  if (options.rebase)
    for (const { index, message } of streamed) {
      const t = model.graph.initializers[index]!.initializer!;
      const raw = message.raw_data as Uint8Array;
      if (!t.isExternal) t.rebase(message, bytes.subarray(at.get(raw)!, at.get(raw)! + raw.length));
    }
  return bytes;
}

/**
 * Writes the model atomically: everything goes to temporary files in the destination folder, which are
 * renamed into place only once complete, so a crash or a full disk never leaves a half-written model. With
 * `staged`, the files are only staged there: the caller renames them with its other outputs.
 */
export function saveModel(model: Model, file: string, options: SaveOptions = {}): void {
  const dir = path.dirname(path.resolve(file));
  let external = options.externalData;
  if (!external && needsExternalData(model)) external = { location: `${path.basename(file)}.data` };
  if (model.sourcePath && sameFile(model.sourcePath, file))
    throw new UserError('refusing to overwrite the input model; choose another output path', file);
  const staged = options.staged ?? new StagedWrites();
  try {
    let dataPlan: ExternalPlan | undefined;
    if (external) {
      let target: string;
      try {
        target = resolveExternalLocation(dir, external.location);
      } catch (e) {
        throw new UserError((e as Error).message, file);
      }
      if (target === path.resolve(file) || sameFile(target, file))
        throw new UserError('the external data location names the model file itself', file);
      if (model.sourcePath && sameFile(model.sourcePath, target))
        throw new UserError('the external data location names the input model', file);
      dataPlan = {
        location: external.location,
        threshold: external.threshold ?? 1024,
        target,
        chunks: [],
        offset: 0,
      };
    }
    const proto = modelToProto(model, dataPlan);
    const pieces = encodePieces(proto);
    if (pieces.reduce((n, b) => n + b.length, 0) > PROTOBUF_LIMIT)
      throw new UserError('model is over 2 GiB even with external data', file);
    // The data first: a model is never in place before the data it points to.
    if (dataPlan) staged.stage(dataPlan.target, dataPlan.chunks);
    staged.stage(file, pieces);
    if (!options.staged) staged.commit();
  } catch (e) {
    if (!options.staged) staged.abort();
    // An input's error (external data of the source model that cannot be read) still names the output.
    if (e instanceof UserError)
      throw e.message.startsWith(file) ? e : new UserError(`cannot write: ${e.message}`, file);
    const err = e as NodeJS.ErrnoException;
    throw new UserError(`cannot write: ${err.code ?? err.message}`, file);
  }
}

/** Whether two paths name one file (also through links or another spelling of the path). */
function sameFile(a: string, b: string): boolean {
  if (path.resolve(a) === path.resolve(b)) return true;
  try {
    if (fs.realpathSync(a) === fs.realpathSync(b)) return true;
    const sa = fs.statSync(a);
    const sb = fs.statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

/** raw_data at least this large is written from where it lies instead of being copied into the encoder's buffer. */
const STREAM_THRESHOLD = 4096;

/**
 * The encoded model as a list of pieces whose concatenation is exactly `ModelProtoType.encode(proto)`, with the
 * main graph's large raw_data left as references to the tensors' own bytes. protobufjs writes into one growing
 * buffer and copies it once more in finish(), so encoding a 100 MB model in one go held ~3x its size; this way
 * only the small parts around the weights are encoded. Fields are written in field-number order (as protobufjs
 * and the reference writer do), so a message splits into the fields before and after the one streamed.
 */
function encodePieces(proto: Msg, streamed?: { index: number; message: Msg }[]): Uint8Array[] {
  const graph = proto.graph as Msg | undefined;
  if (!graph) return [ModelProtoType.encode(proto as any).finish()];
  const graphPieces: Uint8Array[] = [];
  const [graphHead, graphTail] = splitEncode(GraphProtoType, graph, 5, 'initializer');
  graphPieces.push(graphHead);
  ((graph.initializer ?? []) as Msg[]).forEach((t, index) => {
    const tensor = tensorPieces(t);
    if (tensor.length > 1) streamed?.push({ index, message: t });
    graphPieces.push(Uint8Array.from([...tag(5), ...varint(length(tensor))]), ...tensor);
  });
  graphPieces.push(graphTail);
  const [modelHead, modelTail] = splitEncode(ModelProtoType, proto, 7, 'graph');
  return [modelHead, Uint8Array.from([...tag(7), ...varint(length(graphPieces))]), ...graphPieces, modelTail];
}

function tensorPieces(t: Msg): Uint8Array[] {
  const raw = t.raw_data as Uint8Array | undefined;
  if (!raw || raw.length < STREAM_THRESHOLD) return [TensorProtoType.encode(t as any).finish()];
  const [head, tail] = splitEncode(TensorProtoType, t, 9, 'raw_data');
  return [head, Uint8Array.from([...tag(9), ...varint(raw.length)]), raw, tail];
}

/** Encodes the fields of `message` numbered below and above `id`, leaving out `field` (which has that number). */
function splitEncode(type: protobuf.Type, message: Msg, id: number, field: string): [Uint8Array, Uint8Array] {
  const before: Msg = {};
  const after: Msg = {};
  for (const key of Object.keys(message)) {
    if (key === field) continue;
    const f = type.fields[key];
    (f && f.id > id ? after : before)[key] = message[key];
  }
  return [type.encode(before as any).finish(), type.encode(after as any).finish()];
}

const length = (pieces: Uint8Array[]): number => pieces.reduce((n, p) => n + p.length, 0);
/** A length-delimited field's key (wire type 2); every field number used here fits one byte. */
const tag = (field: number): number[] => [(field << 3) | 2];

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

/** Whether the initializers alone would push the file past `limit` (protobuf's 2 GiB), so saveModel stores them externally. */
export function needsExternalData(model: Model, limit = PROTOBUF_LIMIT): boolean {
  return estimateBytes(model) > limit;
}

function estimateBytes(model: Model): number {
  let n = 0;
  const visit = (g: Graph): void => {
    for (const v of g.initializers) n += v.initializer!.byteLength;
    for (const node of g.nodes) node.subgraphs().forEach(visit);
  };
  visit(model.graph);
  return n;
}

interface ExternalPlan {
  location: string;
  threshold: number;
  target: string;
  chunks: Uint8Array[];
  offset: number;
}

export function modelToProto(model: Model, external: ExternalPlan | undefined): Msg {
  const p: Msg = { ir_version: model.irVersion };
  p.opset_import = model.opsetImports.map((o) =>
    o.domain !== '' || o.explicitDomain ? { domain: o.domain, version: o.version } : { version: o.version },
  );
  if (model.producerName !== undefined) p.producer_name = model.producerName;
  if (model.producerVersion !== undefined) p.producer_version = model.producerVersion;
  if (model.domain !== undefined) p.domain = model.domain;
  if (model.modelVersion !== undefined) p.model_version = model.modelVersion;
  if (model.docString !== undefined) p.doc_string = model.docString;
  p.graph = graphToProto(model.graph, external);
  p.metadata_props = model.metadata.map((m) => ({ key: m.key, value: m.value }));
  Object.assign(p, model.extra);
  return p;
}

function graphToProto(g: Graph, external: ExternalPlan | undefined): Msg {
  const p: Msg = {};
  p.node = g.nodes.map((n) => {
    const np: Msg = {
      input: n.inputs.map((v) => v?.name ?? ''),
      output: n.outputs.map((v) => v.name),
    };
    if (n.name !== '') np.name = n.name;
    np.op_type = n.opType;
    if (n.domain !== '' || n.extra?.explicitEmptyDomain) np.domain = n.domain;
    if (n.overload !== undefined) np.overload = n.overload;
    np.attribute = [...n.attributes].map(([name, a]) => attributeToProto(name, a, external));
    if (n.extra) {
      const { explicitEmptyDomain: _, ...rest } = n.extra;
      Object.assign(np, rest);
    }
    return np;
  });
  if (g.name !== '') p.name = g.name;
  p.initializer = g.initializers.map((v) => tensorToProto(v.initializer!, v.name, external));
  p.input = g.inputs.map(valueInfoToProto);
  p.output = g.outputs.map(valueInfoToProto);
  p.value_info = g.valueInfo.map(valueInfoToProto);
  Object.assign(p, g.extra);
  return p;
}

function tensorToProto(t: Tensor, name: string, external: ExternalPlan | undefined): TensorProtoLike {
  if (t.name !== name) t.name = name;
  if (!external || t.byteLength < external.threshold || t.byteLength === 0) return t.toProto(true);
  const bytes = t.rawBytes();
  const base = t.toProto(true);
  const { raw_data: _r, ...rest } = base;
  const entry = {
    ...rest,
    external_data: [
      { key: 'location', value: external.location },
      { key: 'offset', value: String(external.offset) },
      { key: 'length', value: String(bytes.length) },
    ],
    data_location: 1,
  };
  external.chunks.push(bytes);
  external.offset += bytes.length;
  // Keep offsets aligned (as onnx's writer does) so readers can map tensors directly.
  const pad = (4096 - (external.offset % 4096)) % 4096;
  if (pad) {
    external.chunks.push(new Uint8Array(pad));
    external.offset += pad;
  }
  return entry;
}

function valueInfoToProto(v: Value): Msg {
  const p: Msg = { name: v.name };
  if (v.type) p.type = typeToProto(v.type);
  if (v.infoExtra) {
    const { noType, ...rest } = v.infoExtra;
    // A value the file listed without a type stays untyped unless inference has typed it since.
    if (noType && v.type === undefined) delete p.type;
    Object.assign(p, rest);
  }
  return p;
}

export function typeToProto(t: ValueType): Msg {
  if (t.kind === 'other') return t.proto as Msg;
  const tt: Msg = { elem_type: t.elemType };
  if (t.shape) {
    tt.shape = {
      dim: t.shape.map((d) =>
        d === null ? {} : typeof d === 'number' ? { dim_value: d } : { dim_param: d },
      ),
    };
  }
  return { tensor_type: tt };
}

function toLong(v: Int): Long | number {
  return typeof v === 'bigint' ? Long.fromString(v.toString()) : v;
}

function attributeToProto(name: string, a: Attribute, external: ExternalPlan | undefined): Msg {
  const p: Msg = { name };
  switch (a.type) {
    case AttributeType.FLOAT:
      p.f = a.value;
      break;
    case AttributeType.INT:
      p.i = toLong(a.value);
      break;
    case AttributeType.STRING:
      p.s = a.value;
      break;
    case AttributeType.TENSOR:
      p.t = a.value.toProto(true);
      break;
    case AttributeType.GRAPH:
      p.g = graphToProto(a.value, external);
      break;
    case AttributeType.FLOATS:
      p.floats = a.value;
      break;
    case AttributeType.INTS:
      p.ints = a.value.map(toLong);
      break;
    case AttributeType.STRINGS:
      p.strings = a.value;
      break;
    case AttributeType.TENSORS:
      p.tensors = a.value.map((t) => t.toProto(true));
      break;
    case AttributeType.GRAPHS:
      p.graphs = a.value.map((g) => graphToProto(g, external));
      break;
    default:
      return a.value as Msg;
  }
  p.type = a.type;
  if (a.extra) Object.assign(p, a.extra);
  return p;
}
