import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DataType, Tensor } from '../src/ir/index.js';
import { float32Rows, sliceTensorData } from '../src/prune/tensor-data.js';

/** A float32 tensor whose raw_data starts `offset` bytes into its buffer (unaligned when offset % 4 != 0). */
function rawTensor(dims: number[], values: Float32Array, offset: number): Tensor {
  const buf = new Uint8Array(offset + values.byteLength);
  buf.set(new Uint8Array(values.buffer), offset);
  return Tensor.fromProto({ name: 'w', dims, data_type: DataType.FLOAT, raw_data: buf.subarray(offset) });
}

/** Element-by-element reference: keep index combinations in row-major order. */
function naiveSlice(values: Float32Array, dims: number[], keep: Map<number, number[]>): number[] {
  const out: number[] = [];
  const strides = dims.map((_, a) => dims.slice(a + 1).reduce((x, y) => x * y, 1));
  const walk = (a: number, base: number): void => {
    if (a === dims.length) {
      out.push(values[base]!);
      return;
    }
    for (const i of keep.get(a) ?? Array.from({ length: dims[a]! }, (_, j) => j))
      walk(a + 1, base + i * strides[a]!);
  };
  walk(0, 0);
  return out;
}

const sliceCase = fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 }).chain((dims) =>
  fc.record({
    dims: fc.constant(dims),
    offset: fc.integer({ min: 0, max: 7 }),
    keep: fc.tuple(
      ...dims.map((d) =>
        fc.option(
          fc.subarray(
            Array.from({ length: d }, (_, i) => i),
            { minLength: 1 },
          ),
          { nil: undefined },
        ),
      ),
    ),
  }),
);

test('sliceTensorData equals an element-by-element slice, from aligned and unaligned raw bytes', () => {
  fc.assert(
    fc.property(sliceCase, ({ dims, offset, keep }) => {
      const size = dims.reduce((a, b) => a * b, 1);
      const values = Float32Array.from({ length: size }, (_, i) => i * 1.5 - 7);
      const keepByAxis = new Map<number, number[]>();
      keep.forEach((k, a) => k && keepByAxis.set(a, k));
      const t = rawTensor(dims, values, offset);
      const { data, dims: newDims } = sliceTensorData(t, keepByAxis);
      assert.deepEqual(
        newDims,
        dims.map((d, a) => keepByAxis.get(a)?.length ?? d),
      );
      assert.ok(data instanceof Float32Array);
      assert.deepEqual([...data], naiveSlice(values, dims, keepByAxis));
    }),
    { numRuns: 300, seed: 42 },
  );
});

test('float32Rows reads rows of unaligned raw bytes without decoding the tensor', () => {
  const values = Float32Array.from({ length: 12 }, (_, i) => i - 3.25);
  for (const offset of [0, 1, 2, 3]) {
    const rows = float32Rows(rawTensor([3, 4], values, offset), 4);
    for (let p = 0; p < 3; p++) assert.deepEqual([...rows(p)], [...values.subarray(p * 4, p * 4 + 4)]);
  }
});
