import * as ort from 'onnxruntime-node';
import { loadModel, serializeModel, type Model } from '../src/ir/index.js';
import { constantOf, type GroupAnalysis } from '../src/prune/groups.js';
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

/**
 * Makes every channel a plan removes exactly zero in the original model: zero the producing filters (and
 * biases) and BN gamma and beta of every member, so BN outputs 0 (beta + gamma * x̂ with both zero).
 * With `consumers`, the weights that read a removed channel (Conv input slices, Gemm/MatMul rows) are zeroed
 * too: needed where a removed channel is not zero on its way to them (a MatMul's bias is a separate Add, and
 * GELU of it is not zero), and still exactly what removing the channel means.
 */
export function maskRemovedChannels(
  analysis: GroupAnalysis,
  keep: Uint8Array[],
  options: { consumers?: boolean } = {},
): void {
  const removed = (s: { group: number; classOf: Int32Array }, p: number): boolean =>
    !keep[s.group]![s.classOf[p]!];
  for (const a of analysis.actions) {
    if (a.kind === 'conv' || a.kind === 'convTranspose' || a.kind === 'gemm' || a.kind === 'matmul') {
      const w = constantOf(a.node.inputs[1])!;
      const d = w.data.slice() as Float32Array;
      const out = a.output;
      const [rows, cols] = [w.dims[0]!, w.size / w.dims[0]!];
      for (let p = 0; p < out.size; p++) {
        if (!removed(out, p)) continue;
        if (a.kind === 'conv' || (a.kind === 'gemm' && a.transB)) d.fill(0, p * cols, (p + 1) * cols);
        else if (a.kind === 'convTranspose') {
          const k = w.size / (w.dims[0]! * w.dims[1]!);
          for (let c = 0; c < rows; c++) d.fill(0, (c * w.dims[1]! + p) * k, (c * w.dims[1]! + p + 1) * k);
        } else for (let r = 0; r < rows; r++) d[r * w.dims[1]! + p] = 0;
      }
      w.setData(d);
      const b = a.node.inputs[2] ? constantOf(a.node.inputs[2]) : undefined;
      if (b && b.size === out.size) {
        const bd = b.data.slice() as Float32Array;
        for (let p = 0; p < out.size; p++) if (removed(out, p)) bd[p] = 0;
        b.setData(bd);
      }
    }
    if (options.consumers) zeroConsumerWeights(a, removed);
    if (a.kind === 'perChannel' && (a.role === 'scale' || a.role === 'bias')) {
      const t = constantOf(a.node.inputs[a.index])!;
      const d = t.data.slice() as Float32Array;
      for (let p = 0; p < a.space.size; p++) if (removed(a.space, p)) d[p] = 0;
      t.setData(d);
    }
  }
}

/** Zeroes the slices of a weight that read removed input channels (ungrouped Conv, ConvTranspose, Gemm, MatMul). */
function zeroConsumerWeights(
  a: GroupAnalysis['actions'][number],
  removed: (s: { group: number; classOf: Int32Array }, p: number) => boolean,
): void {
  if (a.kind !== 'conv' && a.kind !== 'convTranspose' && a.kind !== 'gemm' && a.kind !== 'matmul') return;
  if (!a.input || (a.kind === 'conv' && (a.depthwise || a.node.attrInt('group', 1) > 1))) return;
  const w = constantOf(a.node.inputs[1])!;
  const inAxis = a.kind === 'conv' || (a.kind === 'gemm' && a.transB) ? 1 : 0;
  const d = w.data.slice() as Float32Array;
  const inner = w.dims.slice(inAxis + 1).reduce((x, y) => x * y, 1);
  const outer = w.dims.slice(0, inAxis).reduce((x, y) => x * y, 1);
  const n = w.dims[inAxis]!;
  for (let p = 0; p < a.input.size; p++) {
    if (!removed(a.input, p)) continue;
    for (let o = 0; o < outer; o++) d.fill(0, (o * n + p) * inner, (o * n + p + 1) * inner);
  }
  w.setData(d);
}

export function load(file: string): Model {
  return loadModel(file);
}
