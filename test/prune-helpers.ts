import * as ort from 'onnxruntime-node';
import { constantOf, loadModel, serializeModel, type Model } from '../src/ir/index.js';
import type { GroupAnalysis } from '../src/prune/groups.js';
export { maskRemovedChannels } from '../src/prune/mask.js';
import { probeInputDims, randomInputs } from '../src/shapes/probe.js';

export async function runModel(model: Model, batch = 2, seed = 7): Promise<Float32Array[]> {
  const dims = probeInputDims(model);
  for (const [k, d] of dims) dims.set(k, [batch, ...d.slice(1)]);
  const session = await ort.InferenceSession.create(serializeModel(model), {
    graphOptimizationLevel: 'disabled',
  });
  try {
    const out = await session.run(randomInputs(model, dims, seed));
    return model.graph.outputs.map((v) => out[v.name]!.data as Float32Array);
  } finally {
    await session.release();
  }
}

export function maxAbsDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  a.forEach((x, i) => {
    if (x.length !== b[i]!.length) m = Infinity;
    else for (let j = 0; j < x.length; j++) m = Math.max(m, Math.abs(x[j]! - b[i]![j]!));
  });
  return m;
}

/**
 * Zeroes, in every linear consumer (Conv, Gemm, MatMul, ... as their handlers' linearUse say), the weight
 * slices that read a removed channel. With maskRemovedChannels this is exactly what removing the channel
 * means, also where a removed channel is not zero on its way to the consumer (a MatMul's bias is a separate
 * Add, and GELU of it is not zero).
 */
export function maskRemovedInputs(analysis: GroupAnalysis, keep: readonly Uint8Array[]): void {
  for (const r of analysis.records) {
    const use = r.op.linearUse?.(r.node, r.data);
    if (!use || typeof use === 'string') continue;
    const w = constantOf(r.node.inputs[use.weight]);
    const space = use.input;
    if (!w || w.dims[use.inAxis] !== space.size) continue;
    const d = w.data.slice() as Float32Array;
    const inner = w.dims.slice(use.inAxis + 1).reduce((x, y) => x * y, 1);
    const outer = w.dims.slice(0, use.inAxis).reduce((x, y) => x * y, 1);
    for (let p = 0; p < space.size; p++) {
      if (keep[space.group]![space.classOf[p]!]) continue;
      for (let o = 0; o < outer; o++)
        d.fill(0, (o * space.size + p) * inner, (o * space.size + p + 1) * inner);
    }
    w.setData(d);
  }
}

export function load(file: string): Model {
  return loadModel(file);
}
