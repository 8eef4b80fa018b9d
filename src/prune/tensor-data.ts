import { arrayLength, storageOf } from '../ir/data-type.js';
import type { Tensor, TypedArray } from '../ir/index.js';

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

type ArrayCtor = {
  new (b: ArrayBufferLike, o: number, n: number): TypedArray;
  new (n: number): TypedArray;
  BYTES_PER_ELEMENT: number;
};

/**
 * The raw little-endian bytes of `t` (a plain Uint8Array view) and its storage array type, where the data can
 * be read from them directly. Pruning reads every weight once (norms) and then replaces it (slice); going
 * through `t.data` would cache a decoded copy of every unaligned raw_data, a second copy of the whole file.
 */
function rawView(t: Tensor): { bytes: Uint8Array; Ctor: ArrayCtor; aligned: boolean } | undefined {
  const storage = storageOf(t.dataType);
  if (!storage || !LITTLE_ENDIAN || t.isExternal || arrayLength(t.dataType, t.size) !== t.size)
    return undefined;
  const Ctor = storage.array as unknown as ArrayCtor;
  const raw = t.rawBytes();
  if (raw.byteLength !== t.size * Ctor.BYTES_PER_ELEMENT) return undefined;
  const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  return { bytes, Ctor, aligned: bytes.byteOffset % Ctor.BYTES_PER_ELEMENT === 0 };
}

/** The elements of `t` for one read: a view where aligned, else a temporary copy (nothing stays cached). */
export function readElements(t: Tensor): TypedArray {
  const raw = rawView(t);
  if (!raw) return t.data;
  if (raw.aligned) return new raw.Ctor(raw.bytes.buffer, raw.bytes.byteOffset, t.size);
  const copy = new raw.Ctor(t.size);
  new Uint8Array(copy.buffer).set(raw.bytes);
  return copy;
}

/**
 * Row `p` (elements [p·len, (p+1)·len)) of a float32 tensor, for one read: a view where the raw bytes are
 * aligned, else a copy into a reused scratch row (never a copy of the whole tensor).
 */
export function float32Rows(t: Tensor, len: number): (p: number) => Float32Array {
  const raw = rawView(t);
  if (!raw || raw.aligned) {
    const data = (
      raw ? new Float32Array(raw.bytes.buffer, raw.bytes.byteOffset, t.size) : t.data
    ) as Float32Array;
    return (p) => data.subarray(p * len, (p + 1) * len);
  }
  const scratch = new Float32Array(len);
  const scratchBytes = new Uint8Array(scratch.buffer);
  const bytes = raw.bytes;
  return (p) => {
    scratchBytes.set(bytes.subarray(p * len * 4, (p + 1) * len * 4));
    return scratch;
  };
}

/**
 * `t` restricted along each listed axis to the given ascending indices, as new data and dims. Unaligned raw
 * bytes are read one slab (everything under one index of axis 0) at a time through a reused aligned scratch,
 * so no copy of the whole tensor is made.
 */
export function sliceTensorData(
  t: Tensor,
  keepByAxis: ReadonlyMap<number, ArrayLike<number>>,
): { data: TypedArray; dims: number[] } {
  const dims = t.dims;
  const newDims = dims.map((d, a) => keepByAxis.get(a)?.length ?? d);
  const raw = rawView(t);
  const Ctor = (raw?.Ctor ?? t.data.constructor) as ArrayCtor;
  const out = new Ctor(newDims.reduce((a, b) => a * b, 1));
  if (out.length === 0) return { data: out, dims: newDims };
  if (!raw || raw.aligned || dims.length < 2) {
    slicer(dims, keepByAxis)(raw ? readElements(t) : t.data, out, 0);
    return { data: out, dims: newDims };
  }
  const width = Ctor.BYTES_PER_ELEMENT;
  const slab = dims.slice(1).reduce((a, b) => a * b, 1);
  const outSlab = newDims.slice(1).reduce((a, b) => a * b, 1);
  const scratch = new Ctor(slab);
  const scratchBytes = new Uint8Array(scratch.buffer);
  const sliceSlab = slicer(
    dims.slice(1),
    new Map([...keepByAxis].filter(([a]) => a > 0).map(([a, k]) => [a - 1, k] as const)),
  );
  const keep0 = keepByAxis.get(0);
  for (let i = 0; i < newDims[0]!; i++) {
    const src = keep0 ? keep0[i]! : i;
    scratchBytes.set(raw.bytes.subarray(src * slab * width, (src + 1) * slab * width));
    sliceSlab(scratch, out, i * outSlab);
  }
  return { data: out, dims: newDims };
}

/**
 * A copier of row-major `dims` data restricted along each listed axis to the given ascending indices, writing
 * into `out` from `at`. Everything after the last sliced axis is one contiguous block, and runs of consecutive
 * kept indices on that axis are copied as one block.
 */
export function slicer(
  dims: readonly number[],
  keepByAxis: ReadonlyMap<number, ArrayLike<number>>,
): (src: TypedArray, out: TypedArray, at: number) => void {
  const rank = dims.length;
  if (rank === 0 || keepByAxis.size === 0) return (src, out, at) => out.set(src as never, at);
  const newDims = dims.map((d, a) => keepByAxis.get(a)?.length ?? d);
  const strides = new Array<number>(rank);
  for (let a = rank - 1, s = 1; a >= 0; a--) {
    strides[a] = s;
    s *= dims[a]!;
  }
  const last = Math.max(...keepByAxis.keys());
  const block = strides[last]!;
  // Runs of consecutive kept indices on the last sliced axis: start and length in source elements.
  const lastKeep = keepByAxis.get(last)!;
  const starts: number[] = [];
  const lengths: number[] = [];
  for (let i = 0; i < lastKeep.length;) {
    let j = i + 1;
    while (j < lastKeep.length && lastKeep[j]! === lastKeep[j - 1]! + 1) j++;
    starts.push(lastKeep[i]! * block);
    lengths.push((j - i) * block);
    i = j;
  }
  // Short runs (scattered kept channels of a 1x1 conv): a flat gather list beats a loop per run.
  const gather =
    lastKeep.length * block < 16 * starts.length ? new Int32Array(lastKeep.length * block) : undefined;
  if (gather)
    for (let r = 0, g = 0; r < starts.length; r++)
      for (let i = 0; i < lengths[r]!; i++) gather[g++] = starts[r]! + i;
  // Source offsets of every kept index combination of the axes before `last`.
  let bases = [0];
  for (let a = 0; a < last; a++) {
    const k = keepByAxis.get(a);
    const next: number[] = [];
    for (const b of bases) for (let i = 0; i < newDims[a]!; i++) next.push(b + (k ? k[i]! : i) * strides[a]!);
    bases = next;
  }
  if (newDims.some((d) => d === 0)) return () => {};
  if (gather)
    return (src, out, at) => {
      let o = at;
      for (const base of bases) for (let i = 0; i < gather.length; i++) out[o++] = src[base + gather[i]!]!;
    };
  return (src, out, at) => {
    let o = at;
    for (const base of bases) {
      for (let r = 0; r < starts.length; r++) {
        const from = base + starts[r]!;
        const len = lengths[r]!;
        if (len >= 64) out.set(src.subarray(from, from + len) as never, o);
        else for (let i = 0; i < len; i++) out[o + i] = src[from + i]!;
        o += len;
      }
    }
  };
}
