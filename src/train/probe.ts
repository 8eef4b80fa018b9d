import ort from 'onnxruntime-node';
import { decodeModel, serializeModel } from '../ir/index.js';
import type { Model } from '../ir/model.js';
import { UserError } from '../errors.js';

export interface ProbedValue {
  /** The static shape at the requested batch size. */
  shape: number[];
  type: string;
  /** Contents, kept for small tensors that do not depend on the batch (slice bounds, pads, clip limits). */
  data?: number[];
}

/**
 * Static shapes (and small constant contents) of every node output, found by running the model at batch 1
 * and batch 2: a dim that doubles is batch-dependent and becomes `batch` times its batch-1 size. This needs no
 * shape inference and sees exactly what onnxruntime computes, constant subgraphs included.
 */
export async function probeValues(
  model: Model,
  batch: number,
  inputName: string,
): Promise<Map<string, ProbedValue>> {
  const copy = model.clone();
  const g = copy.graph;
  const outputs = new Set(g.outputs);
  for (const n of g.nodes)
    for (const o of n.outputs)
      if (!outputs.has(o)) {
        g.outputs.push(o);
        outputs.add(o);
      }
  const input = g.inputs.find((v) => v.name === inputName)!;
  const dims = input.shape ?? [];
  const session = await ort.InferenceSession.create(serializeModel(copy), {
    graphOptimizationLevel: 'disabled',
    intraOpNumThreads: 1,
  });
  const runAt = async (n: number): Promise<ort.InferenceSession.ReturnType> => {
    const shape = dims.map((d, i) => (i === 0 ? n : typeof d === 'number' ? d : 1));
    return session.run({
      [inputName]: new ort.Tensor('float32', new Float32Array(shape.reduce((a, b) => a * b, 1)), shape),
    });
  };
  const [one, two] = [await runAt(1), await runAt(2)];
  await session.release();
  const result = new Map<string, ProbedValue>();
  for (const [name, a] of Object.entries(one)) {
    const b = two[name] as ort.Tensor;
    const t = a as ort.Tensor;
    const shape = t.dims.map((d, i) => {
      const d2 = b.dims[i];
      if (d2 === d) return d;
      if (d2 === 2 * d) return d * batch;
      throw new UserError(
        `value '${name}' has a shape that does not scale with the batch (${t.dims} at 1, ${b.dims} at 2)`,
      );
    });
    const entry: ProbedValue = { shape, type: t.type };
    const sameData =
      t.size === b.size &&
      t.size <= 64 &&
      Array.from(t.data as ArrayLike<number | bigint>).every(
        (v, i) => v === (b.data as ArrayLike<number | bigint>)[i],
      );
    if (sameData && t.type !== 'string')
      entry.data = Array.from(t.data as ArrayLike<number | bigint>, Number);
    result.set(name, entry);
  }
  return result;
}
