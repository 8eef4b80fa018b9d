import { arrayLength, storageOf } from '../ir/data-type.js';
import type { Tensor, TypedArray } from '../ir/index.js';

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The elements of `t` for one read, without leaving a decoded copy cached on the tensor: a view on its raw
 * bytes where they are aligned, else a temporary aligned copy that is garbage once the caller is done. Pruning
 * reads every weight once (norms) and then replaces it (slice), so caching the decoded copies of unaligned
 * raw_data would hold a second copy of the whole file until the rewrite.
 */
export function readElements(t: Tensor): TypedArray {
  const storage = storageOf(t.dataType);
  if (!storage || !LITTLE_ENDIAN || t.isExternal || arrayLength(t.dataType, t.size) !== t.size) return t.data;
  const Ctor = storage.array as unknown as { new (b: ArrayBufferLike, o: number, n: number): TypedArray; new (n: number): TypedArray; BYTES_PER_ELEMENT: number };
  const bytes = t.rawBytes();
  if (bytes.byteLength !== t.size * Ctor.BYTES_PER_ELEMENT) return t.data;
  if (bytes.byteOffset % Ctor.BYTES_PER_ELEMENT === 0) return new Ctor(bytes.buffer, bytes.byteOffset, t.size);
  const copy = new Ctor(t.size);
  new Uint8Array(copy.buffer).set(bytes);
  return copy;
}

/**
 * A new array holding `src` (a row-major tensor of `dims`) restricted, along each listed axis, to the given
 * ascending indices. Everything after the last sliced axis is one contiguous block, and runs of consecutive
 * kept indices on that axis are copied as one block.
 */
export function sliceElements(src: TypedArray, dims: readonly number[], keepByAxis: ReadonlyMap<number, ArrayLike<number>>): { data: TypedArray; dims: number[] } {
  const rank = dims.length;
  const newDims = dims.map((d, a) => keepByAxis.get(a)?.length ?? d);
  const out = new (src.constructor as { new (n: number): TypedArray })(newDims.reduce((a, b) => a * b, 1));
  if (rank === 0 || keepByAxis.size === 0) {
    out.set(src as never);
    return { data: out, dims: newDims };
  }
  if (out.length === 0) return { data: out, dims: newDims };
  const strides = new Array<number>(rank);
  for (let a = rank - 1, s = 1; a >= 0; a--) {
    strides[a] = s;
    s *= dims[a]!;
  }
  const last = Math.max(...keepByAxis.keys());
  const block = strides[last]!;
  // Runs of consecutive kept indices on the last sliced axis: [start, length] in source elements.
  const lastKeep = keepByAxis.get(last)!;
  const runs: number[] = [];
  for (let i = 0; i < lastKeep.length; ) {
    let j = i + 1;
    while (j < lastKeep.length && lastKeep[j]! === lastKeep[j - 1]! + 1) j++;
    runs.push(lastKeep[i]! * block, (j - i) * block);
    i = j;
  }
  // Odometer over the axes before `last` (kept indices only).
  const outer = Array.from({ length: last }, (_, a) => keepByAxis.get(a) ?? null);
  const counter = new Array<number>(last).fill(0);
  let o = 0;
  for (;;) {
    let base = 0;
    for (let a = 0; a < last; a++) base += (outer[a] ? outer[a]![counter[a]!]! : counter[a]!) * strides[a]!;
    for (let r = 0; r < runs.length; r += 2) {
      const from = base + runs[r]!;
      const len = runs[r + 1]!;
      if (len >= 64) out.set(src.subarray(from, from + len) as never, o);
      else for (let i = 0; i < len; i++) out[o + i] = src[from + i]!;
      o += len;
    }
    let a = last - 1;
    for (; a >= 0; a--) {
      if (++counter[a]! < newDims[a]!) break;
      counter[a] = 0;
    }
    if (a < 0) break;
  }
  return { data: out, dims: newDims };
}
