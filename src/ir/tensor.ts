import Long from 'long';
import { DataType, arrayLength, byteLength, dataTypeName, storageOf, type TypedArray } from './data-type.js';

/** A decoded onnx.TensorProto message as protobufjs gives it (only the fields this module reads). */
export interface TensorProtoLike {
  name?: string;
  dims?: (Long | number)[];
  data_type?: number;
  raw_data?: Uint8Array;
  float_data?: number[];
  int32_data?: number[];
  int64_data?: (Long | number)[];
  double_data?: number[];
  uint64_data?: (Long | number)[];
  string_data?: Uint8Array[];
  external_data?: { key?: string; value?: string }[];
  data_location?: number;
  doc_string?: string;
  [field: string]: unknown;
}

/**
 * Where the bytes of a tensor detached from a loaded file are read again (LoadedFile): `read` returns a fresh
 * copy of `length` bytes at `offset` of that file, after checking that the file is still the one loaded.
 */
export interface ByteSource {
  read(offset: number, length: number, tensorName: string): Uint8Array;
  /** Records a tensor that views the loaded bytes, so that releasing the file detaches it too. */
  track(t: Tensor): void;
}

/** Reads the bytes of an externally stored tensor; set by the loader, which knows the model's folder. */
export type ExternalReader = (
  entries: Map<string, string>,
  tensorName: string,
  expectedBytes: number,
) => Uint8Array;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A constant tensor (initializer, Constant value, attribute tensor). It keeps the message it was decoded from
 * and re-emits that message untouched until its data or dims change, which is what makes save lossless
 * (float_data stays float_data, raw_data stays raw_data, doc strings and metadata survive). Numeric data is
 * decoded lazily, as a view on raw_data when alignment allows.
 */
export class Tensor {
  private proto: TensorProtoLike;
  private cached: TypedArray | undefined;
  private dirty = false;
  private externalReader: ExternalReader | undefined;
  /** The loaded file whose buffer raw_data views (tracked there), or which holds the bytes once detached. */
  private origin: ByteSource | undefined;
  /** Set once detached: raw_data left the message and is read from the file at `offset` on demand. */
  private backing: { offset: number; length: number } | undefined;

  readonly dims: readonly number[];
  readonly dataType: DataType;

  private constructor(proto: TensorProtoLike, dims: number[], dataType: DataType) {
    this.proto = proto;
    this.dims = Object.freeze(dims);
    this.dataType = dataType;
  }

  /** `origin`: the loaded file that `proto.raw_data` views, which tracks the tensor (see LoadedFile). */
  static fromProto(proto: TensorProtoLike, externalReader?: ExternalReader, origin?: ByteSource): Tensor {
    const dims = (proto.dims ?? []).map((d) => toSafeNumber(d, 'tensor dimension'));
    for (const d of dims)
      if (d < 0) throw new Error(`tensor '${proto.name ?? ''}' has a negative dimension ${d}`);
    const t = new Tensor(proto, dims, (proto.data_type ?? 0) as DataType);
    t.externalReader = externalReader;
    if (origin && proto.raw_data?.length) {
      t.origin = origin;
      origin.track(t);
    }
    return t;
  }

  /** A new tensor holding `data` (copied only if it is not already of the storage array type). */
  static fromArray(
    dataType: DataType,
    dims: readonly number[],
    data: TypedArray | ArrayLike<number | bigint>,
    name = '',
  ): Tensor {
    const t = new Tensor({ name }, [...dims], dataType);
    t.setData(data);
    return t;
  }

  static scalarFloat(value: number, name = ''): Tensor {
    return Tensor.fromArray(DataType.FLOAT, [], new Float32Array([value]), name);
  }

  static int64(
    values: readonly (number | bigint)[],
    dims: readonly number[] = [values.length],
    name = '',
  ): Tensor {
    return Tensor.fromArray(DataType.INT64, dims, BigInt64Array.from(values.map((v) => BigInt(v))), name);
  }

  get name(): string {
    return this.proto.name ?? '';
  }

  set name(name: string) {
    if (name === this.name) return;
    this.proto = { ...this.proto, name };
  }

  get docString(): string | undefined {
    return this.proto.doc_string;
  }

  get size(): number {
    return this.dims.reduce((a, b) => a * b, 1);
  }

  get isExternal(): boolean {
    return !this.dirty && this.proto.data_location === 1;
  }

  /** Whether the data was detached from its loaded file and is read from it again on demand. */
  get isDetached(): boolean {
    return !this.dirty && this.backing !== undefined;
  }

  /** Bytes this tensor occupies as raw data (0 for strings). */
  get byteLength(): number {
    return this.dataType === DataType.STRING ? 0 : byteLength(this.dataType, this.size);
  }

  /** The elements, in the storage array of the data type (see data-type.ts). Throws for strings. */
  get data(): TypedArray {
    if (!this.cached) this.cached = this.decode();
    return this.cached;
  }

  /** Float data as numbers, whatever the numeric type (float16/bfloat16 widened; int64 converted). */
  toFloat64(): Float64Array {
    const d = this.data;
    if (this.dataType === DataType.FLOAT16) return Float64Array.from(d as Uint16Array, halfToFloat);
    if (this.dataType === DataType.BFLOAT16) return Float64Array.from(d as Uint16Array, bfloat16ToFloat);
    const out = new Float64Array(d.length);
    for (let i = 0; i < d.length; i++) out[i] = Number(d[i]);
    return out;
  }

  /** Integer values as plain numbers (shape and index tensors). */
  toNumbers(): number[] {
    return Array.from(this.data as ArrayLike<number | bigint>, (v) =>
      toSafeNumber(v, `value of tensor '${this.name}'`),
    );
  }

  get strings(): Uint8Array[] {
    if (this.dataType !== DataType.STRING) throw new Error(`tensor '${this.name}' is not a string tensor`);
    return this.proto.string_data ?? [];
  }

  /** Replaces the data (and optionally the dims); the tensor will be written as raw_data. */
  setData(data: TypedArray | ArrayLike<number | bigint>, dims?: readonly number[]): void {
    if (dims) (this as { dims: readonly number[] }).dims = Object.freeze([...dims]);
    const storage = storageOf(this.dataType);
    if (!storage) throw new Error(`cannot set data of a ${dataTypeName(this.dataType)} tensor`);
    const expected = arrayLength(this.dataType, this.size);
    const typed =
      data instanceof storage.array
        ? (data as TypedArray)
        : (storage.array as unknown as { from(d: ArrayLike<unknown>): TypedArray }).from(data);
    if (typed.length !== expected)
      throw new Error(
        `tensor '${this.name}': ${typed.length} values for dims [${this.dims.join(', ')}] (need ${expected})`,
      );
    this.cached = typed;
    this.dirty = true;
    this.backing = undefined;
  }

  /**
   * The elements in order, in pieces of at most `max` elements, for one pass over a large tensor: views where
   * the raw bytes are aligned, else copies through one reused scratch (the scratch is overwritten by the next
   * piece). Unlike `data`, nothing is decoded and cached, so reading every weight once does not hold a second
   * copy of the file.
   */
  *chunks(max = 1 << 16): Generator<TypedArray> {
    const storage = storageOf(this.dataType);
    const raw = this.dirty || this.cached || this.proto.data_location === 1 ? undefined : this.rawSource();
    if (!storage || !raw || !LITTLE_ENDIAN || arrayLength(this.dataType, this.size) !== this.size) {
      const d = this.data;
      for (let i = 0; i < d.length; i += max) yield d.subarray(i, Math.min(d.length, i + max));
      return;
    }
    const Ctor = storage.array as unknown as {
      new (b: ArrayBufferLike, o: number, l: number): TypedArray;
      new (l: number): TypedArray;
      BYTES_PER_ELEMENT: number;
    };
    const width = Ctor.BYTES_PER_ELEMENT;
    const n = this.size;
    if (raw.length !== n * width) {
      yield this.data; // decode reports the mismatch
      return;
    }
    if (raw.byteOffset % width === 0) {
      const all = new Ctor(raw.buffer, raw.byteOffset, n);
      for (let i = 0; i < n; i += max) yield all.subarray(i, Math.min(n, i + max));
      return;
    }
    const scratch = new Ctor(Math.min(n, max));
    const scratchBytes = new Uint8Array(scratch.buffer);
    for (let i = 0; i < n; i += max) {
      const len = Math.min(n - i, max);
      scratchBytes.set(raw.subarray(i * width, (i + len) * width));
      yield scratch.subarray(0, len);
    }
  }

  /** The raw_data bytes as loaded (read back from the file when detached); undefined when there are none. */
  private rawSource(): Uint8Array | undefined {
    if (this.backing) return this.origin!.read(this.backing.offset, this.backing.length, this.name);
    const raw = this.proto.raw_data;
    return raw && raw.length > 0 ? raw : undefined;
  }

  /**
   * LoadedFile.release: stop viewing the loaded file's buffer. Untouched raw_data leaves the message and is read
   * back from the file when next needed (`offsetOf` gives its offset there; undefined when `bytes` do not view
   * the buffer); data replaced by setData drops the stale bytes. Returns the bytes no longer viewed.
   */
  detachFromFile(offsetOf: (bytes: Uint8Array) => number | undefined): number {
    const raw = this.proto.raw_data;
    if (this.dirty && this.cached) {
      const c = this.cached;
      if (offsetOf(new Uint8Array(c.buffer, c.byteOffset, c.byteLength)) !== undefined)
        this.cached = c.slice();
    }
    const offset = raw && raw.length > 0 ? offsetOf(raw) : undefined;
    if (offset === undefined || this.proto.data_location === 1) return 0;
    const { raw_data: _, ...rest } = this.proto;
    this.proto = rest;
    if (this.dirty) {
      this.origin = undefined;
      return raw!.length;
    }
    this.cached = undefined;
    this.backing = { offset, length: raw!.length };
    return raw!.length;
  }

  /**
   * Points this tensor at `bytes`, its raw_data as encoded in `message` (the message toProto gave for that
   * encoding): what serializeModelCompact's `rebase` does so that the model and the bytes handed to onnxruntime
   * are one copy. The data and what save writes are unchanged.
   */
  rebase(message: TensorProtoLike, bytes: Uint8Array): void {
    this.proto = { ...message, raw_data: bytes };
    this.cached = undefined;
    this.dirty = false;
    this.backing = undefined;
    this.origin = undefined;
  }

  /**
   * Lets go of the bytes this tensor was decoded from, so that a loaded file's buffer (which every raw_data
   * views) can be freed: data replaced by setData drops the old fields; untouched raw_data is copied when
   * `copyUntouched`. What save writes is unchanged. Returns the number of raw bytes no longer referenced.
   */
  releaseSource(copyUntouched = true): number {
    const {
      raw_data: raw,
      float_data: _f,
      int32_data: _i,
      int64_data: _l,
      double_data: _d,
      uint64_data: _u,
      ...rest
    } = this.proto;
    if (this.dirty) {
      this.proto = rest;
      return raw?.length ?? 0;
    }
    if (!copyUntouched || !raw || raw.length === 0 || this.proto.data_location === 1) return 0;
    if (this.cached && this.cached.buffer === raw.buffer) this.cached = undefined;
    this.proto = { ...this.proto, raw_data: new Uint8Array(raw) };
    this.origin = undefined;
    return raw.length;
  }

  /** The message to write. `inlineExternal` replaces an external reference by raw bytes. */
  toProto(inlineExternal = false): TensorProtoLike {
    if (this.isDetached) return { ...this.proto, raw_data: this.rawSource()! };
    if (!this.dirty && !(inlineExternal && this.proto.data_location === 1)) return this.proto;
    const {
      raw_data: _r,
      float_data: _f,
      int32_data: _i,
      int64_data: _l,
      double_data: _d,
      uint64_data: _u,
      external_data: _e,
      data_location: _loc,
      dims: _dims,
      data_type: _t,
      ...rest
    } = this.proto;
    return { ...rest, dims: [...this.dims], data_type: this.dataType, raw_data: this.rawBytes() };
  }

  /** Little-endian bytes of the data, as raw_data holds them. */
  rawBytes(): Uint8Array {
    if (this.isDetached) return this.rawSource()!;
    if (!this.dirty && this.proto.raw_data && this.proto.data_location !== 1) return this.proto.raw_data;
    const d = this.data;
    const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    return LITTLE_ENDIAN ? bytes : swapBytes(bytes, d.BYTES_PER_ELEMENT);
  }

  /**
   * A second tensor over the same source bytes (no copy): what Model.clone gives each initializer. Safe because
   * tensors never write into their source: setData replaces the data, it does not modify it.
   */
  share(): Tensor {
    const t = new Tensor(this.proto, [...this.dims], this.dataType);
    t.externalReader = this.externalReader;
    if (this.dirty) {
      t.cached = this.cached!.slice();
      t.dirty = true;
    } else if (this.origin) {
      // The copy views (or reads back) the same file: releasing it must reach the copy too.
      t.origin = this.origin;
      t.backing = this.backing;
      if (!this.backing) this.origin.track(t);
    }
    return t;
  }

  clone(name = this.name): Tensor {
    if (this.dataType === DataType.STRING) return Tensor.fromProto({ ...this.proto, name });
    return Tensor.fromArray(this.dataType, this.dims, this.data.slice(), name);
  }

  private decode(): TypedArray {
    const storage = storageOf(this.dataType);
    if (!storage)
      throw new Error(
        `tensor '${this.name}' has data type ${dataTypeName(this.dataType)}, which holds no numbers`,
      );
    const length = arrayLength(this.dataType, this.size);
    const p = this.proto;
    if (p.data_location === 1) {
      if (!this.externalReader)
        throw new Error(`tensor '${this.name}' is stored externally and no folder is known to read it from`);
      const entries = new Map((p.external_data ?? []).map((e) => [e.key ?? '', e.value ?? '']));
      return this.fromBytes(this.externalReader(entries, this.name, this.byteLength), storage.array, length);
    }
    const raw = this.rawSource();
    if (raw) return this.fromBytes(raw, storage.array, length);
    const fields = p.float_data?.length
      ? p.float_data
      : p.int32_data?.length
        ? p.int32_data
        : p.int64_data?.length
          ? p.int64_data
          : p.double_data?.length
            ? p.double_data
            : p.uint64_data?.length
              ? p.uint64_data
              : [];
    if (length === 0 || fields.length === 0) {
      if (length !== 0)
        throw new Error(`tensor '${this.name}' has dims [${this.dims.join(', ')}] but no data`);
      return new storage.array(0);
    }
    // int32_data holds one 8/16-bit value (or one packed 4-bit pair) per entry, so counts match the array.
    if (fields.length !== length)
      throw new Error(`tensor '${this.name}' holds ${fields.length} values, expected ${length}`);
    const out = new storage.array(length);
    const isBig = out instanceof BigInt64Array || out instanceof BigUint64Array;
    for (let i = 0; i < length; i++) {
      const v = fields[i]!;
      if (isBig) (out as BigInt64Array)[i] = longToBigInt(v, out instanceof BigUint64Array);
      else (out as Float32Array)[i] = typeof v === 'number' ? v : (v as Long).toNumber();
    }
    return out;
  }

  private fromBytes(
    bytes: Uint8Array,
    array: TypedArray['constructor'] & { BYTES_PER_ELEMENT: number },
    length: number,
  ): TypedArray {
    const Ctor = array as unknown as {
      new (b: ArrayBufferLike, o: number, l: number): TypedArray;
      new (l: number): TypedArray;
      BYTES_PER_ELEMENT: number;
    };
    const width = Ctor.BYTES_PER_ELEMENT;
    if (bytes.length !== length * width)
      throw new Error(
        `tensor '${this.name}' has ${bytes.length} bytes of data, expected ${length * width} for dims [${this.dims.join(', ')}] of ${dataTypeName(this.dataType)}`,
      );
    if (!LITTLE_ENDIAN) bytes = swapBytes(bytes, width);
    if (bytes.byteOffset % width === 0) return new Ctor(bytes.buffer, bytes.byteOffset, length);
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    return new Ctor(copy.buffer, 0, length);
  }
}

export function toSafeNumber(v: Long | number | bigint, what: string): number {
  const n = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : v.toNumber();
  const exact =
    typeof v === 'number' ||
    (typeof v === 'bigint' ? BigInt(n) === v : Long.fromNumber(n, (v as Long).unsigned).equals(v));
  if (!Number.isSafeInteger(n) || !exact) throw new Error(`${what} ${v.toString()} is out of range`);
  return n;
}

function longToBigInt(v: Long | number, unsigned: boolean): bigint {
  if (typeof v === 'number') return BigInt(v);
  const big = BigInt(v.toString());
  return unsigned && big < 0n ? big + (1n << 64n) : big;
}

function swapBytes(bytes: Uint8Array, width: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += width)
    for (let j = 0; j < width; j++) out[i + j] = bytes[i + width - 1 - j]!;
  return out;
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

export function bfloat16ToFloat(b: number): number {
  return new Float32Array(new Uint32Array([b << 16]).buffer)[0]!;
}
