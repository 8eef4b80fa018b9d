import * as ort from 'onnxruntime-node';
import { loadModel, serializeModel, type Model } from '../src/ir/index.js';
export { maskRemovedChannels } from '../src/prune/mask.js';
import { probeInputDims, randomInputs } from '../src/prune/probe.js';

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

export function load(file: string): Model {
  return loadModel(file);
}
