import { UserError } from '../errors.js';
import { DataType, type Model, type Tensor } from '../ir/index.js';
import { loadModel } from '../ir/load.js';
import { cleanupPipeline } from '../passes/index.js';
import { PassManager } from '../passes/pass-manager.js';
import { pruneModel } from '../prune/index.js';

/**
 * What a PyTorch model needs to become the pruned one: for every parameter and buffer (by state_dict key), its
 * original shape and the kept indices along each pruned axis; for every Conv/Linear/BatchNorm module, its new
 * constructor attributes. Derived from the original model and the plan by adapruner's own rewrite, so the
 * torch side slices exactly as the ONNX side did (concat offsets, depthwise groups, flatten blocks included).
 */
export interface TorchSpec {
  params: ParamSpec[];
  modules: ModuleSpec[];
  /** Kept-index lists, shared by the parameters that use them, each as [start, end) runs. */
  keeps: [number, number][][];
}

export interface ParamSpec {
  /** The state_dict key, e.g. `layer1.0.conv1.weight` (the ONNX initializer name of a BN-kept export). */
  name: string;
  shape: number[];
  pruned: number[];
  /** Axis -> index into `keeps`, for the axes that lost entries. */
  keep: Record<string, number>;
}

export type ModuleKind = 'conv' | 'convTranspose' | 'linear' | 'batchNorm';

export interface ModuleSpec {
  path: string;
  kind: ModuleKind;
  /** Constructor attributes after pruning: in_channels/out_channels/groups, in/out_features, num_features. */
  attrs: Record<string, number>;
}

/** A dotted identifier path as torch's state_dict writes keys; exporter-made names (`onnx::Conv_12`) are not. */
export function isStateDictKey(name: string): boolean {
  return /^[A-Za-z_]\w*(\.\w+)*$/.test(name);
}

/** The standard load and cleanup `prune` starts from, so the plan's anchors match. */
export function loadForPlan(file: string): Model {
  const model = loadModel(file);
  cleanupPipeline(new PassManager(), model);
  return model;
}

/**
 * Every parameter (float initializer named by a state_dict key) gets, in place, the value of its own index
 * along `axis` (exact in float32 below 2^24), so that after the rewrite the surviving values name the kept
 * indices. Other constants keep their values: shape arithmetic must come out as in the real run.
 */
function markAxis(model: Model, axis: number): void {
  for (const v of model.graph.initializers) {
    const t = v.initializer!;
    if (t.dataType !== DataType.FLOAT || t.dims.length <= axis || !isStateDictKey(v.name)) continue;
    const size = t.dims[axis]!;
    if (size >= 1 << 24)
      throw new UserError(`'${v.name}' has ${size} entries on axis ${axis}: too many to trace`);
    const inner = t.dims.slice(axis + 1).reduce((a, b) => a * b, 1);
    const data = new Float32Array(t.dims.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = Math.floor(i / inner) % size;
    t.setData(data);
  }
}

function readAxis(t: Tensor, axis: number): number[] {
  const inner = t.dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const data = t.data as Float32Array;
  return Array.from({ length: t.dims[axis]! }, (_, j) => data[j * inner]!);
}

function runs(indices: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const i of indices) {
    const last = out[out.length - 1];
    if (last && last[1] === i) last[1] = i + 1;
    else out.push([i, i + 1]);
  }
  return out;
}

/** Conv/Linear/BatchNorm attributes after pruning, from the rewritten graph's nodes and weights. */
function moduleSpecs(pruned: Model): ModuleSpec[] {
  const specs: ModuleSpec[] = [];
  const byPath = new Map<string, ModuleSpec>();
  for (const node of pruned.graph.allNodes()) {
    const weight = node.inputs[1];
    const w = weight?.initializer;
    if (!weight || !w || !weight.name.endsWith('.weight') || !isStateDictKey(weight.name)) continue;
    const path = weight.name.slice(0, -'.weight'.length);
    const group = node.attrInt('group', 1);
    let spec: ModuleSpec | undefined;
    if (node.opType === 'Conv')
      spec = {
        path,
        kind: 'conv',
        attrs: { out_channels: w.dims[0]!, in_channels: w.dims[1]! * group, groups: group },
      };
    else if (node.opType === 'ConvTranspose')
      spec = {
        path,
        kind: 'convTranspose',
        attrs: { in_channels: w.dims[0]!, out_channels: w.dims[1]! * group, groups: group },
      };
    else if (node.opType === 'Gemm' && node.attrInt('transB', 0) === 1)
      spec = { path, kind: 'linear', attrs: { out_features: w.dims[0]!, in_features: w.dims[1]! } };
    else if (node.opType === 'BatchNormalization')
      spec = { path, kind: 'batchNorm', attrs: { num_features: w.dims[0]! } };
    if (!spec) continue;
    const seen = byPath.get(path);
    if (seen && JSON.stringify(seen) !== JSON.stringify(spec))
      throw new UserError(`module '${path}' is used twice with different shapes`);
    if (!seen) specs.push(spec);
    byPath.set(path, spec);
  }
  return specs;
}

/**
 * Traces the plan through the rewrite (one run per pruned axis) and returns what the torch side must do.
 * `plan` is the parsed plan file, `where` names it in errors.
 */
export async function torchSpec(
  modelFile: string,
  plan: unknown,
  where: string,
  inputShapes?: Record<string, number[]>,
): Promise<TorchSpec> {
  const original = loadForPlan(modelFile);
  const floats = original.graph.initializers.filter((v) => v.initializer!.dataType === DataType.FLOAT);
  const keepsByName = new Map<string, Record<string, number[]>>();
  let modules: ModuleSpec[] = [];
  let prunedDims = new Map<string, number[]>();
  // Channel pruning only ever slices axes 0 and 1 (filters and input channels; Linear [out, in]; BN vectors).
  for (const axis of [0, 1]) {
    const marked = loadForPlan(modelFile);
    markAxis(marked, axis);
    const { model } = await pruneModel(marked, { plan, planSource: where, validate: false, inputShapes });
    const after = new Map(model.graph.initializers.map((v) => [v.name, v.initializer!]));
    if (axis === 0) {
      modules = moduleSpecs(model);
      prunedDims = new Map([...after].map(([n, t]) => [n, [...t.dims]]));
    }
    for (const v of floats) {
      const t = after.get(v.name);
      const before = v.initializer!.dims;
      if (!t) {
        if (after.has(`${v.name}_pruned`))
          throw new UserError(
            `'${v.name}' is read by several nodes, so the rewrite sliced a copy of it; export-torch cannot name the copy in torch`,
            modelFile,
          );
        continue; // no longer read by anything (the rewrite dropped it): nothing to slice on the torch side
      }
      if (!isStateDictKey(v.name)) {
        if (t.dims.join('x') !== before.join('x'))
          throw new UserError(
            `the plan prunes initializer '${v.name}', whose name is not a state_dict key: export the model from torch with BN kept (training=TrainingMode.PRESERVE, do_constant_folding=False)`,
            modelFile,
          );
        continue;
      }
      if (t.dims.length <= axis || t.dims[axis] === before[axis]) continue;
      const kept = readAxis(t, axis);
      const entry = keepsByName.get(v.name) ?? {};
      entry[String(axis)] = kept;
      keepsByName.set(v.name, entry);
    }
  }
  const keeps: [number, number][][] = [];
  const keepIndex = new Map<string, number>();
  const params: ParamSpec[] = [];
  for (const v of floats) {
    if (!isStateDictKey(v.name) || !prunedDims.has(v.name)) continue;
    const keep: Record<string, number> = {};
    for (const [axis, kept] of Object.entries(keepsByName.get(v.name) ?? {})) {
      const key = kept.join(',');
      if (!keepIndex.has(key)) {
        keepIndex.set(key, keeps.length);
        keeps.push(runs(kept));
      }
      keep[axis] = keepIndex.get(key)!;
    }
    params.push({ name: v.name, shape: [...v.initializer!.dims], pruned: prunedDims.get(v.name)!, keep });
  }
  return { params, modules, keeps };
}

/** Raw little-endian float32 weights of the pruned model, by state_dict key, and where each lies in the blob. */
export interface WeightBlob {
  bytes: Uint8Array[];
  byteLength: number;
  entries: { name: string; shape: number[]; offset: number }[];
}

/**
 * The pruned (and possibly recalibrated or fine-tuned) weights of `prunedFile`, checked against the spec: every
 * state_dict-named float initializer of the spec must be there with the pruned shape the plan gives.
 */
export function prunedWeights(prunedFile: string, spec: TorchSpec): WeightBlob {
  const model = loadModel(prunedFile);
  const inits = new Map(model.graph.initializers.map((v) => [v.name, v.initializer!]));
  const entries: WeightBlob['entries'] = [];
  const bytes: Uint8Array[] = [];
  let offset = 0;
  for (const p of spec.params) {
    const t = inits.get(p.name);
    if (!t)
      throw new UserError(
        `has no initializer '${p.name}': was it pruned from this model with this plan?`,
        prunedFile,
      );
    if (t.dataType !== DataType.FLOAT || t.dims.join('x') !== p.pruned.join('x'))
      throw new UserError(
        `'${p.name}' is [${t.dims.join(', ')}] here but the plan makes it [${p.pruned.join(', ')}]: the plan and the pruned model do not match`,
        prunedFile,
      );
    const data = t.data as Float32Array;
    // Float32Array bytes are in the host's order; every platform onnxruntime-node ships for is little-endian.
    const chunk = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    bytes.push(chunk);
    entries.push({ name: p.name, shape: [...t.dims], offset });
    offset += chunk.byteLength;
  }
  return { bytes, byteLength: offset, entries };
}
