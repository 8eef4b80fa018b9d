import { UserError } from '../errors.js';
import { DataType, type Model, type Tensor, type Value } from '../ir/index.js';
import { loadModel } from '../ir/load.js';
import { cleanupPipeline } from '../passes/index.js';
import { PassManager } from '../passes/pass-manager.js';
import { analyzeModel, validatePlan } from '../prune/index.js';
import type { GroupAnalysis } from '../prune/groups.js';
import { applyKeep, keptPositions } from '../prune/rewrite.js';
import { unequalSplit } from '../prune/torch-compatible.js';
import { inputShapesFor } from '../shapes/input-shapes.js';
import { probeInputDims } from '../shapes/probe.js';
import { isStateDictKey, prepareForSpec, scopesOf, toTorchLayout, type Alias } from './aliases.js';
import { attentionSpecs, viewSpecs } from './transformer-spec.js';

export { isStateDictKey } from './aliases.js';

/**
 * What a PyTorch model needs to become the pruned one: for every parameter and buffer (by state_dict key), its
 * original shape and the kept indices along each pruned axis; for every Conv/Linear/BatchNorm module, its new
 * constructor attributes; for every module whose output channels are pruned, the kept ones (for the modules the
 * export never ran, such as GoogLeNet's auxiliary heads); for every nn.MultiheadAttention the plan changes, its
 * kept heads, head dim and width; for every fixed channel count a module's own forward reshapes to (ViT's
 * `hidden_dim`), the new count. Derived from the original model and the plan by adapruner's own rewrite, so the
 * torch side slices exactly as the ONNX side did (concat offsets, depthwise groups, flatten blocks, head
 * Reshapes included).
 */
export interface TorchSpec {
  params: ParamSpec[];
  modules: ModuleSpec[];
  /** Kept-index lists, shared by the parameters that use them, each as [start, end) runs. */
  keeps: [number, number][][];
  /** Module path -> [channels before, index into `keeps`] of its output, for the outputs the plan prunes. */
  outputs: Record<string, [number, number]>;
  /** The model input's shape at batch 2 (for tracing the modules the export never ran), when it has one input. */
  input: number[] | null;
  attention: AttentionSpec[];
  views: ViewSpec[];
  /** Where each key's tensor is in the ONNX graph (not written to the module). */
  sources: Map<string, ParamSource>;
}

export interface ParamSpec {
  /** The state_dict key, e.g. `layer1.0.conv1.weight` (the ONNX initializer name of a BN-kept export). */
  name: string;
  shape: number[];
  pruned: number[];
  /** Axis -> index into `keeps`, for the axes that lost entries. */
  keep: Record<string, number>;
}

/** The ONNX tensor of a key: the initializer a node reads at an input, in torch's layout after `perm`. */
export interface ParamSource {
  onnx: string;
  node: string;
  input: number;
  perm?: number[];
}

export type ModuleKind = 'conv' | 'convTranspose' | 'linear' | 'batchNorm' | 'embedding';

/**
 * An nn.MultiheadAttention (packed `in_proj_weight`) whose heads or width the plan changes, from the head
 * Reshapes of its forward: the Python side sets embed_dim/num_heads/head_dim, and where heads·head_dim is not
 * the width (torch derives head_dim = embed_dim // num_heads) gives it a forward with the head count explicit.
 */
export interface AttentionSpec {
  path: string;
  /** Heads before pruning, and the kept ones (original indices); whole heads go, the head dim stays. */
  heads: number;
  kept: number[];
  headDim: number;
  /** The width of the query (and key, value) it reads and of its output after pruning (the stream). */
  embedDim: number;
}

/**
 * A channel count that a module's own forward gives a view, expand or zeros() as a Python int (a constant in
 * the raw export, not computed from a tensor's shape), which the rewrite changed: torchvision ViT's
 * `x.reshape(n, self.hidden_dim, n_h * n_w)`. The Python side sets the module's one int attribute equal to
 * `before` (it refuses when there is none or several).
 */
export interface ViewSpec {
  /** Module path ('' for the model itself). */
  path: string;
  before: number;
  after: number;
}

export interface ModuleSpec {
  path: string;
  kind: ModuleKind;
  /** Constructor attributes after pruning: in_channels/out_channels/groups, in/out_features, num_features. */
  attrs: Record<string, number>;
}

/** The standard load and cleanup `prune` starts from, so the plan's anchors match. */
export function loadForPlan(file: string): Model {
  const model = loadModel(file);
  cleanupPipeline(new PassManager(), model);
  return model;
}

interface Tracked {
  value: Value;
  key: string;
  perm?: number[];
}

/** The float initializers that are parameters: named by their key, or an alias of one. */
function trackedInitializers(model: Model, aliases: Map<string, Alias>): Tracked[] {
  const out: Tracked[] = [];
  for (const v of model.graph.initializers) {
    if (v.initializer!.dataType !== DataType.FLOAT) continue;
    const alias = aliases.get(v.name);
    if (alias) out.push({ value: v, key: alias.key, perm: alias.perm });
    else if (isStateDictKey(v.name)) out.push({ value: v, key: v.name });
  }
  return out;
}

/**
 * Every tracked initializer gets, in place, the value of its own index along ONNX `axis` (exact in float32
 * below 2^24), so that after the rewrite the surviving values name the kept indices. Other constants keep
 * their values: nothing the rewrite computes depends on a parameter's values.
 */
function markAxis(tracked: Tracked[], axis: number): void {
  for (const { value: v } of tracked) {
    const t = v.initializer!;
    if (t.dims.length <= axis) continue;
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

function runs(indices: ArrayLike<number>): [number, number][] {
  const out: [number, number][] = [];
  for (const i of Array.from(indices)) {
    const last = out[out.length - 1];
    if (last && last[1] === i) last[1] = i + 1;
    else out.push([i, i + 1]);
  }
  return out;
}

/** Conv/Linear/BatchNorm attributes after pruning, from the rewritten graph's nodes and weights. */
function moduleSpecs(pruned: Model, aliases: Map<string, Alias>): ModuleSpec[] {
  const specs: ModuleSpec[] = [];
  const byPath = new Map<string, ModuleSpec>();
  for (const node of pruned.graph.allNodes()) {
    const weight = node.inputs[1];
    const w = weight?.initializer;
    const alias = weight && aliases.get(weight.name);
    const table = node.inputs[0];
    if (node.opType === 'Gather' && table?.initializer && isEmbedding(table, node.attrInt('axis', 0)!)) {
      const t = table.initializer;
      const path = table.name.slice(0, -'.weight'.length);
      add({ path, kind: 'embedding', attrs: { num_embeddings: t.dims[0]!, embedding_dim: t.dims[1]! } });
      continue;
    }
    if (
      node.opType === 'MatMul' &&
      w &&
      alias?.key.endsWith('.weight') &&
      w.dims.length === 2 &&
      alias.perm.join() === '1,0'
    ) {
      const path = alias.key.slice(0, -'.weight'.length);
      add({ path, kind: 'linear', attrs: { out_features: w.dims[1]!, in_features: w.dims[0]! } });
      continue;
    }
    if (!weight || !w || !weight.name.endsWith('.weight') || !isStateDictKey(weight.name)) continue;
    const path = weight.name.slice(0, -'.weight'.length);
    const group = node.attrInt('group', 1)!;
    if (node.opType === 'Conv')
      add({
        path,
        kind: 'conv',
        attrs: { out_channels: w.dims[0]!, in_channels: w.dims[1]! * group, groups: group },
      });
    else if (node.opType === 'ConvTranspose')
      add({
        path,
        kind: 'convTranspose',
        attrs: { in_channels: w.dims[0]!, out_channels: w.dims[1]! * group, groups: group },
      });
    else if (node.opType === 'Gemm' && node.attrInt('transB', 0) === 1)
      add({ path, kind: 'linear', attrs: { out_features: w.dims[0]!, in_features: w.dims[1]! } });
    else if (node.opType === 'BatchNormalization')
      add({ path, kind: 'batchNorm', attrs: { num_features: w.dims[0]! } });
  }
  return specs;

  function add(spec: ModuleSpec): void {
    const seen = byPath.get(spec.path);
    if (seen && JSON.stringify(seen) !== JSON.stringify(spec))
      throw new UserError(`module '${spec.path}' is used twice with different shapes`);
    if (!seen) specs.push(spec);
    byPath.set(spec.path, spec);
  }
}

/** An nn.Embedding's table: a [num, dim] float parameter named `PATH.weight`, gathered on axis 0. */
function isEmbedding(table: Value, axis: number): boolean {
  const t = table.initializer!;
  return (
    axis === 0 &&
    t.dims.length === 2 &&
    t.dataType === DataType.FLOAT &&
    table.name.endsWith('.weight') &&
    isStateDictKey(table.name)
  );
}

/**
 * The output of every module scope (torch >= 1.13 node names): the last value its nodes make that a node
 * outside it reads (or the graph returns), with the kept channels where the plan prunes them.
 */
function moduleOutputs(
  analysis: GroupAnalysis,
  kept: Int32Array[],
): Map<string, { size: number; kept: Int32Array }> {
  const g = analysis.model.graph;
  const last = new Map<string, Value>();
  const scopeSets = new Map<string, Set<string>>();
  const scopesOfNode = (name: string): Set<string> => {
    let s = scopeSets.get(name);
    if (!s) scopeSets.set(name, (s = new Set(scopesOf(name))));
    return s;
  };
  for (const node of g.nodes) {
    const inside = scopesOfNode(node.name);
    for (const o of node.outputs)
      for (const scope of inside)
        if (g.outputs.includes(o) || o.uses.some((u) => !scopesOfNode(u.node.name).has(scope)))
          last.set(scope, o);
  }
  const out = new Map<string, { size: number; kept: Int32Array }>();
  for (const [scope, v] of last) {
    const s = analysis.spaceOf.get(v);
    if (s && s.axis === 1 && kept[s.id]!.length < s.size) out.set(scope, { size: s.size, kept: kept[s.id]! });
  }
  return out;
}

/** Refuses a plan that slices a tensor torch does not know by name, or one several nodes read. */
function checkUntracked(
  model: Model,
  tracked: Tracked[],
  after: Map<string, Tensor>,
  unnamed: ReadonlyMap<string, [string, number]>,
  file: string,
): void {
  const names = new Set(tracked.map((t) => t.value.name));
  for (const v of model.graph.initializers) {
    const t = after.get(v.name);
    const before = v.initializer!.dims.join('x');
    if (names.has(v.name)) {
      if (!t && after.has(`${v.name}_pruned`))
        throw new UserError(
          `'${v.name}' is read by several nodes (a weight shared in torch), so the rewrite sliced a copy of it for each; export-torch cannot name the copies in torch`,
          file,
        );
      continue;
    }
    if (v.initializer!.dataType !== DataType.FLOAT || !t || t.dims.join('x') === before) continue;
    const applier = unnamed.get(v.name);
    if (applier)
      throw new UserError(
        `the plan prunes '${v.name}', one of ${applier[1]} MatMul weights that the forward of '${applier[0]}' applies itself (F.linear, as Swin's attention does): export-torch cannot tell which of its parameters each is`,
        file,
      );
    throw new UserError(
      /^onnx::(Conv|Gemm)_/.test(v.name)
        ? `the plan prunes initializer '${v.name}', whose name is not a state_dict key: export the model from torch with BN kept (training=TrainingMode.PRESERVE, do_constant_folding=False)`
        : `the plan prunes initializer '${v.name}', which export-torch cannot trace to a state_dict key (it is no parameter, no Identity or Transpose of one, and no scoped MatMul weight)`,
      file,
    );
  }
}

/**
 * Traces the plan through the rewrite (one run per pruned axis) and returns what the torch side must do.
 * `plan` is the parsed plan file, `where` names it in errors.
 */
export async function torchSpec(
  modelFile: string,
  plan: unknown,
  where: string,
  inputShape?: string | string[],
): Promise<TorchSpec> {
  const { model, aliases, unnamed } = prepareForSpec(modelFile);
  const shapes = inputShapesFor(model, inputShape, modelFile);
  const analysis = await analyzeModel(model, shapes);
  const { keep } = validatePlan(plan, analysis, where);
  const unequal = unequalSplit(analysis, keep);
  if (unequal)
    throw new UserError(
      `${unequal}: torch's chunk() cuts equal parts, so the module cannot follow this plan (prune with --torch-compatible)`,
      where,
    );
  const tracked = trackedInitializers(model, aliases);
  const real = tracked.map((t) => t.value.initializer!.data);
  const keptByKey = new Map<string, Record<string, number[]>>();
  let pruned: Model | undefined;
  // One rewrite per pruned axis: axis 0 first (filters, Linear rows, vectors), then every axis its run shows
  // shrinking somewhere (input channels; the stream axis of ViT's class token and position embedding).
  const axes = [0];
  for (let i = 0; i < axes.length; i++) {
    const axis = axes[i]!;
    markAxis(tracked, axis);
    const out = applyKeep(analysis, keep);
    const after = new Map(out.graph.initializers.map((v) => [v.name, v.initializer!]));
    if (axis === 0) {
      checkUntracked(model, tracked, after, unnamed, modelFile);
      pruned = out;
      for (const { value: v } of tracked)
        after.get(v.name)?.dims.forEach((size, j) => {
          if (size !== v.initializer!.dims[j] && !axes.includes(j)) axes.push(j);
        });
    }
    for (const { value: v, key, perm } of tracked) {
      const t = after.get(v.name);
      const before = v.initializer!.dims;
      if (!t || t.dims.length <= axis || t.dims[axis] === before[axis]) continue;
      const entry = keptByKey.get(key) ?? {};
      entry[String(perm ? perm[axis] : axis)] = readAxis(t, axis);
      keptByKey.set(key, entry);
    }
  }
  tracked.forEach((t, i) => t.value.initializer!.setData(real[i]!));
  const dims = probeInputDims(model, shapes);
  const input = dims.size === 1 ? [2, ...[...dims.values()][0]!.slice(1)] : null;
  const spec = assemble(analysis, keep, tracked, pruned!, aliases, keptByKey);
  const attention = attentionSpecs(analysis, keep, spec.params, modelFile);
  const views = viewSpecs(modelFile, model, pruned!, attention);
  return { ...spec, input, attention, views };
}

function assemble(
  analysis: GroupAnalysis,
  keep: Uint8Array[],
  tracked: Tracked[],
  pruned: Model,
  aliases: Map<string, Alias>,
  keptByKey: Map<string, Record<string, number[]>>,
): Omit<TorchSpec, 'input' | 'attention' | 'views'> {
  const keeps: [number, number][][] = [];
  const keepIndex = new Map<string, number>();
  const indexOf = (kept: ArrayLike<number>): number => {
    const key = Array.from(kept).join(',');
    if (!keepIndex.has(key)) {
      keepIndex.set(key, keeps.length);
      keeps.push(runs(kept));
    }
    return keepIndex.get(key)!;
  };
  const prunedDims = new Map(pruned.graph.initializers.map((v) => [v.name, [...v.initializer!.dims]]));
  const params: ParamSpec[] = [];
  const sources = new Map<string, ParamSource>();
  const torchDims = (dims: readonly number[], perm?: number[]): number[] => {
    if (!perm) return [...dims];
    const out: number[] = new Array(dims.length);
    perm.forEach((p, i) => (out[p] = dims[i]!));
    return out;
  };
  for (const { value: v, key, perm } of tracked) {
    const after = prunedDims.get(v.name);
    const use = v.uses[0];
    if (!after || !use) continue; // no longer read (the rewrite dropped it): nothing to slice in torch
    if (sources.has(key)) throw new UserError(`'${key}' is in the graph twice`, analysis.model.sourcePath);
    const keep: Record<string, number> = {};
    for (const [axis, kept] of Object.entries(keptByKey.get(key) ?? {})) keep[axis] = indexOf(kept);
    params.push({
      name: key,
      shape: torchDims(v.initializer!.dims, perm),
      pruned: torchDims(after, perm),
      keep,
    });
    sources.set(key, { onnx: v.name, node: use.node.name, input: use.index, ...(perm ? { perm } : {}) });
  }
  const outputs: Record<string, [number, number]> = {};
  for (const [scope, { size, kept }] of moduleOutputs(analysis, keptPositions(analysis, keep)))
    outputs[scope] = [size, indexOf(kept)];
  return { params, modules: moduleSpecs(pruned, aliases), keeps, outputs, sources };
}

/** Raw little-endian float32 weights of the pruned model, by state_dict key, and where each lies in the blob. */
export interface WeightBlob {
  bytes: Uint8Array[];
  byteLength: number;
  entries: { name: string; shape: number[]; offset: number }[];
}

/**
 * The pruned (and possibly recalibrated or fine-tuned) weights of `prunedFile`, checked against the spec: every
 * parameter of the spec must be there, read by the node that read it in the original, with the pruned shape
 * the plan gives.
 */
export function prunedWeights(prunedFile: string, spec: TorchSpec): WeightBlob {
  const model = loadModel(prunedFile);
  const g = model.graph;
  const inits = new Map(g.initializers.map((v) => [v.name, v.initializer!]));
  const nodes = new Map(g.nodes.map((n) => [n.name, n]));
  const entries: WeightBlob['entries'] = [];
  const bytes: Uint8Array[] = [];
  let offset = 0;
  for (const p of spec.params) {
    const source = spec.sources.get(p.name);
    let v = source && nodes.get(source.node)?.inputs[source.input];
    while (v?.producer?.opType === 'Identity') v = v.producer.inputs[0];
    const t = v?.initializer ?? inits.get(source?.onnx ?? p.name);
    if (!t)
      throw new UserError(
        `has no initializer for '${p.name}': was it pruned from this model with this plan?`,
        prunedFile,
      );
    const onnxDims = source?.perm ? source.perm.map((axis) => p.pruned[axis]!) : p.pruned;
    if (t.dataType !== DataType.FLOAT || t.dims.join('x') !== onnxDims.join('x'))
      throw new UserError(
        `'${p.name}' is [${t.dims.join(', ')}] here but the plan makes it [${onnxDims.join(', ')}]: the plan and the pruned model do not match`,
        prunedFile,
      );
    let data = t.data as Float32Array;
    if (source?.perm) data = toTorchLayout(data, t.dims, source.perm);
    // Float32Array bytes are in the host's order; every platform onnxruntime-node ships for is little-endian.
    const chunk = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    bytes.push(chunk);
    entries.push({ name: p.name, shape: [...p.pruned], offset });
    offset += chunk.byteLength;
  }
  return { bytes, byteLength: offset, entries };
}
