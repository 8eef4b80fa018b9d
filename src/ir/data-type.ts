/** ONNX TensorProto.DataType, with how each type is held in memory. */
export enum DataType {
  UNDEFINED = 0,
  FLOAT = 1,
  UINT8 = 2,
  INT8 = 3,
  UINT16 = 4,
  INT16 = 5,
  INT32 = 6,
  INT64 = 7,
  STRING = 8,
  BOOL = 9,
  FLOAT16 = 10,
  DOUBLE = 11,
  UINT32 = 12,
  UINT64 = 13,
  COMPLEX64 = 14,
  COMPLEX128 = 15,
  BFLOAT16 = 16,
  FLOAT8E4M3FN = 17,
  FLOAT8E4M3FNUZ = 18,
  FLOAT8E5M2 = 19,
  FLOAT8E5M2FNUZ = 20,
  UINT4 = 21,
  INT4 = 22,
  FLOAT4E2M1 = 23,
  FLOAT8E8M0 = 24,
}

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

type TypedArrayConstructor = {
  new (length: number): TypedArray;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray;
  readonly BYTES_PER_ELEMENT: number;
};

/**
 * How each type is stored: the typed array that holds it, how many array elements one tensor element takes
 * (complex = 2), and how many tensor elements share one byte (4-bit types pack two per byte). Float16,
 * bfloat16 and the float8 family stay as raw bits: nothing here does arithmetic on them.
 */
interface Storage {
  array: TypedArrayConstructor;
  lanes: number;
  perByte: number;
}

const STORAGE: Partial<Record<DataType, Storage>> = {
  [DataType.FLOAT]: { array: Float32Array, lanes: 1, perByte: 1 },
  [DataType.UINT8]: { array: Uint8Array, lanes: 1, perByte: 1 },
  [DataType.INT8]: { array: Int8Array, lanes: 1, perByte: 1 },
  [DataType.UINT16]: { array: Uint16Array, lanes: 1, perByte: 1 },
  [DataType.INT16]: { array: Int16Array, lanes: 1, perByte: 1 },
  [DataType.INT32]: { array: Int32Array, lanes: 1, perByte: 1 },
  [DataType.INT64]: { array: BigInt64Array, lanes: 1, perByte: 1 },
  [DataType.BOOL]: { array: Uint8Array, lanes: 1, perByte: 1 },
  [DataType.FLOAT16]: { array: Uint16Array, lanes: 1, perByte: 1 },
  [DataType.DOUBLE]: { array: Float64Array, lanes: 1, perByte: 1 },
  [DataType.UINT32]: { array: Uint32Array, lanes: 1, perByte: 1 },
  [DataType.UINT64]: { array: BigUint64Array, lanes: 1, perByte: 1 },
  [DataType.COMPLEX64]: { array: Float32Array, lanes: 2, perByte: 1 },
  [DataType.COMPLEX128]: { array: Float64Array, lanes: 2, perByte: 1 },
  [DataType.BFLOAT16]: { array: Uint16Array, lanes: 1, perByte: 1 },
  [DataType.FLOAT8E4M3FN]: { array: Uint8Array, lanes: 1, perByte: 1 },
  [DataType.FLOAT8E4M3FNUZ]: { array: Uint8Array, lanes: 1, perByte: 1 },
  [DataType.FLOAT8E5M2]: { array: Uint8Array, lanes: 1, perByte: 1 },
  [DataType.FLOAT8E5M2FNUZ]: { array: Uint8Array, lanes: 1, perByte: 1 },
  [DataType.UINT4]: { array: Uint8Array, lanes: 1, perByte: 2 },
  [DataType.INT4]: { array: Uint8Array, lanes: 1, perByte: 2 },
  [DataType.FLOAT4E2M1]: { array: Uint8Array, lanes: 1, perByte: 2 },
  [DataType.FLOAT8E8M0]: { array: Uint8Array, lanes: 1, perByte: 1 },
};

export function storageOf(type: DataType): Storage | undefined {
  return STORAGE[type];
}

/** Length of the typed array that holds `count` elements of `type`. */
export function arrayLength(type: DataType, count: number): number {
  const s = STORAGE[type];
  if (!s) throw new Error(`no numeric storage for data type ${DataType[type] ?? type}`);
  return s.perByte === 2 ? Math.ceil(count / 2) : count * s.lanes;
}

export function byteLength(type: DataType, count: number): number {
  return arrayLength(type, count) * STORAGE[type]!.array.BYTES_PER_ELEMENT;
}

export function dataTypeName(type: number): string {
  return DataType[type] ?? `type#${type}`;
}

/** The onnxruntime-node tensor type string for a data type (for feeding sessions). */
export function ortTypeName(type: DataType): string {
  const names: Partial<Record<DataType, string>> = {
    [DataType.FLOAT]: 'float32',
    [DataType.UINT8]: 'uint8',
    [DataType.INT8]: 'int8',
    [DataType.UINT16]: 'uint16',
    [DataType.INT16]: 'int16',
    [DataType.INT32]: 'int32',
    [DataType.INT64]: 'int64',
    [DataType.STRING]: 'string',
    [DataType.BOOL]: 'bool',
    [DataType.FLOAT16]: 'float16',
    [DataType.DOUBLE]: 'float64',
    [DataType.UINT32]: 'uint32',
    [DataType.UINT64]: 'uint64',
  };
  const name = names[type];
  if (!name) throw new Error(`onnxruntime-node has no tensor type for ${dataTypeName(type)}`);
  return name;
}
