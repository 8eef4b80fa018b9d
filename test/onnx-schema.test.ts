import assert from 'node:assert/strict';
import { test } from 'node:test';
import onnxProto from 'onnx-proto';
import protobuf from 'protobufjs';
import { schemaRoot } from '../src/ir/onnx-schema.js';

/*
 * Our schema (src/ir/onnx-schema.ts) replaces the `onnx-proto` package's, which stops at onnx 1.10. This checks
 * that nothing the package knows was lost: every field of every message exists in ours with the same number and
 * wire type, and a message with every field set travels package -> ours -> package unchanged.
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
const pkg = (onnxProto as Any).onnx as Record<string, Any>;

interface PkgField {
  message: string;
  jsName: string;
  name: string;
  id: number;
  wireType: number;
  repeated: boolean;
  /** The writer method for scalars (`float`, `int64`...) or the message type it encodes. */
  writes: string;
}

const snake = (s: string): string => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Every message class of the package's static code, nested ones included, by full name. */
function packageMessages(): Map<string, Any> {
  const out = new Map<string, Any>();
  const visit = (prefix: string, ns: Record<string, Any>): void => {
    for (const [name, value] of Object.entries(ns)) {
      if (typeof value !== 'function' || typeof value.encode !== 'function') continue;
      out.set(`${prefix}.${name}`, value);
      visit(`${prefix}.${name}`, value);
    }
  };
  visit('onnx', pkg);
  return out;
}

/**
 * Reads the fields out of a generated encode function. protobufjs's static code writes each field as
 * `if (message.x != null ...) writer.uint32(/* id N, wireType W =*\/TAG).method(message.x)`, one block per field.
 */
function packageFields(message: string, cls: Any): PkgField[] {
  const source: string = cls.encode.toString();
  const fields: PkgField[] = [];
  for (const block of source.split(/\bif \(message\./).slice(1)) {
    const jsName = /^(\w+)/.exec(block)![1]!;
    const tag = /\/\* id (\d+), wireType (\d+) =\*\/\d+\)/.exec(block);
    assert.ok(tag, `cannot read the tag of ${message}.${jsName} from onnx-proto's encoder`);
    const method = /\.(\w+)\(message\.\w+(?:\[i\])?\)/.exec(block.slice(tag.index))?.[1];
    const sub = /\$root\.([\w.]+)\.encode/.exec(block)?.[1];
    fields.push({
      message,
      jsName,
      name: snake(jsName),
      id: Number(tag[1]),
      wireType: Number(tag[2]),
      repeated: /\.length\)/.test(block.split('\n')[0]!),
      writes: sub ?? method ?? '?',
    });
  }
  return fields;
}

const BASIC_WIRE: Record<string, number> = { ...protobuf.types.basic };

function ourWireType(field: protobuf.Field): number {
  field.resolve();
  if (field.resolvedType instanceof protobuf.Type) return 2;
  if (field.resolvedType instanceof protobuf.Enum) return field.repeated && field.packed ? 2 : 0;
  if (field.repeated && field.packed && field.type !== 'string' && field.type !== 'bytes') return 2;
  return BASIC_WIRE[field.type]!;
}

const messages = packageMessages();
const allFields = [...messages].flatMap(([name, cls]) => packageFields(name, cls));

test('the package schema was read (sanity: known counts)', () => {
  // onnx-proto 8.0.1 = onnx 1.10: 21 message types with encoders.
  assert.equal(messages.size, 21);
  const model = allFields.filter((f) => f.message === 'onnx.ModelProto').map((f) => `${f.name}=${f.id}`);
  assert.deepEqual(model.sort(), [
    'doc_string=6',
    'domain=4',
    'functions=25',
    'graph=7',
    'ir_version=1',
    'metadata_props=14',
    'model_version=5',
    'opset_import=8',
    'producer_name=2',
    'producer_version=3',
    'training_info=20',
  ]);
  assert.ok(allFields.length > 100, `only ${allFields.length} fields found`);
});

test('every onnx-proto field exists in our schema with the same number, type and wire type', () => {
  const problems: string[] = [];
  for (const f of allFields) {
    const ours = schemaRoot.lookup(f.message);
    if (!(ours instanceof protobuf.Type)) {
      problems.push(`message ${f.message} is missing`);
      continue;
    }
    const field = ours.fields[f.name];
    if (!field) {
      problems.push(`${f.message}.${f.name} is missing`);
      continue;
    }
    if (field.id !== f.id) problems.push(`${f.message}.${f.name}: number ${field.id}, package ${f.id}`);
    if (field.repeated !== f.repeated)
      problems.push(`${f.message}.${f.name}: repeated ${field.repeated}, package ${f.repeated}`);
    field.resolve();
    const ourType =
      field.resolvedType instanceof protobuf.Type ? field.resolvedType.fullName.slice(1) : field.type;
    const pkgType = f.writes;
    // Enums are written as int32 by protobufjs; our schema names the enum type.
    const sameType =
      ourType === pkgType || (field.resolvedType instanceof protobuf.Enum && pkgType === 'int32');
    if (!sameType) problems.push(`${f.message}.${f.name}: type ${ourType}, package ${pkgType}`);
    const wire = ourWireType(field);
    // A repeated scalar may be packed (2) in one schema and not in the other: proto2 (the reference onnx.proto)
    // leaves attribute floats/ints unpacked, the package's proto3-generated code packs them. Every protobuf
    // parser must accept both layouts, so only the element wire type has to agree.
    const packedEither =
      f.repeated && BASIC_WIRE[field.type] !== undefined && field.type !== 'string' && field.type !== 'bytes';
    if (wire !== f.wireType && !(packedEither && (wire === 2 || f.wireType === 2)))
      problems.push(`${f.message}.${f.name}: wire type ${wire}, package ${f.wireType}`);
  }
  assert.deepEqual(problems, []);
});

test('enum values agree', () => {
  const pairs: [string, Any][] = [
    ['onnx.AttributeProto.AttributeType', pkg.AttributeProto.AttributeType],
    ['onnx.TensorProto.DataLocation', pkg.TensorProto.DataLocation],
  ];
  for (const [name, values] of pairs) {
    const ours = schemaRoot.lookupEnum(name).values;
    for (const [k, v] of Object.entries(values)) assert.equal(ours[k], v, `${name}.${k}`);
  }
});

/** A value for every field of a package message, recursing into sub-messages to `depth`. */
function fullMessage(name: string, depth: number, seed: { n: number }): Any {
  const cls = messages.get(name)!;
  const out: Record<string, unknown> = {};
  const oneofsSeen = new Set<string>();
  for (const f of packageFields(name, cls)) {
    // Only one member of a oneof can be set; the package marks them with a getter on the prototype.
    const oneof = oneofOf(cls, f.jsName);
    if (oneof) {
      if (oneofsSeen.has(oneof)) continue;
      oneofsSeen.add(oneof);
    }
    const one = (): unknown => {
      seed.n++;
      switch (f.writes) {
        case 'string':
          return `s${seed.n}`;
        case 'bytes':
          return new Uint8Array([seed.n & 255, 7]);
        case 'float':
          return seed.n + 0.5;
        case 'double':
          return seed.n + 0.25;
        case 'bool':
          return true;
        case 'int32':
          return f.name.endsWith('type') || f.name === 'data_location' ? 1 : seed.n;
        case 'int64':
        case 'uint64':
          return seed.n * 1000;
        default:
          return depth > 0 ? fullMessage(f.writes, depth - 1, seed) : {};
      }
    };
    out[f.jsName] = f.repeated ? [one(), one()] : one();
  }
  return out;
}

/** The oneof a field belongs to: the package defines each oneof as a getter naming the member that is set. */
function oneofOf(cls: Any, jsName: string): string | undefined {
  const probe = new cls();
  probe[jsName] = 1;
  for (const key of Object.getOwnPropertyNames(cls.prototype)) {
    const get = Object.getOwnPropertyDescriptor(cls.prototype, key)?.get;
    if (get && get.call(probe) === jsName) return key;
  }
  return undefined;
}

test('a ModelProto with every package field set travels package -> ours -> package unchanged', () => {
  const message = fullMessage('onnx.ModelProto', 5, { n: 0 });
  const Pkg = pkg.ModelProto;
  assert.equal(Pkg.verify(message), null);
  const pkgBytes: Uint8Array = Pkg.encode(Pkg.fromObject(message)).finish();
  const Ours = schemaRoot.lookupType('onnx.ModelProto');
  const decodedByUs = Ours.decode(pkgBytes);
  const ourBytes = Ours.encode(decodedByUs).finish();
  const options = { longs: String, bytes: Array, defaults: false, arrays: false };
  assert.deepEqual(Pkg.toObject(Pkg.decode(ourBytes), options), Pkg.toObject(Pkg.decode(pkgBytes), options));
  // Nothing fell into protobufjs's unknown-field void: every package field name is present in our decode.
  const countKeys = (m: Any): number =>
    m && typeof m === 'object' && !(m instanceof Uint8Array)
      ? Object.values(m).reduce<number>((n, v) => n + 1 + countKeys(v), 0)
      : 0;
  assert.equal(
    countKeys(Ours.toObject(decodedByUs, options)),
    countKeys(Pkg.toObject(Pkg.decode(pkgBytes), options)),
  );
});
