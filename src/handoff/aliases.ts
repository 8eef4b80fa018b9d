import { Tensor, Value, type Model, type Node } from '../ir/index.js';
import { loadModel } from '../ir/load.js';
import { cleanupPipeline } from '../passes/index.js';
import { PassManager } from '../passes/pass-manager.js';

/**
 * How torch's exporter names what it writes, and how to get from an ONNX initializer back to the state_dict key
 * torch knows it by. Three things hide the key: the exporter de-duplicates identical parameters (all-zero
 * biases) into one initializer that the other keys read through `Identity` nodes named by those keys; a Linear on
 * an input of more than two dims becomes `MatMul` reading `Transpose(key)` (folded here into an initializer named
 * after the Transpose's output) or, with constant folding, an initializer `onnx::MatMul_N` whose key only the
 * node's scope (`/features/features.1/.../block.3/MatMul`) gives (`SCOPE.in_proj_weight` for the packed
 * projection of an nn.MultiheadAttention).
 */

/**
 * A state_dict key as torch writes one: module names joined by dots (any characters but the dot, as torch
 * allows: RegNet's `block1-0`), then the attribute. Exporter-made names (`onnx::Conv_12`, `/layer1/Add_output_0`)
 * are not keys.
 */
export function isStateDictKey(name: string): boolean {
  return (
    name.length > 0 &&
    !name.startsWith('onnx::') &&
    !name.startsWith('/') &&
    name.split('.').every((part) => part.length > 0)
  );
}

/** An initializer of the prepared model standing for a state_dict key in another layout. */
export interface Alias {
  key: string;
  /** ONNX dims[i] is torch dims[perm[i]]. */
  perm: number[];
}

export interface PreparedModel {
  model: Model;
  /** Initializer name -> the key it is a transposed copy of (initializers named by their key are not listed). */
  aliases: Map<string, Alias>;
  /**
   * Scoped MatMul weights left without a key because their module applies several (`F.linear` in its own
   * forward): initializer name -> [the module path, how many].
   */
  unnamed: Map<string, [string, number]>;
}

/**
 * The module path a torch >= 1.13 node name's scopes give: `/features/features.1/features.1.0/block/block.3/MatMul`
 * is `features.1.0.block.3` (each scope is its module's name, either the whole path so far or relative to the
 * last scope); undefined for a name with no scope. Every prefix module is listed, outermost first.
 */
export function scopesOf(nodeName: string): string[] {
  if (!nodeName.startsWith('/')) return [];
  const parts = nodeName.split('/').slice(1, -1);
  const out: string[] = [];
  let last = '';
  let path = '';
  for (const part of parts) {
    if (!part) return out;
    if (last && part.startsWith(`${last}.`)) path = path.slice(0, path.length - last.length) + part;
    else path = path ? `${path}.${part}` : part;
    last = part;
    out.push(path);
  }
  return out;
}

/**
 * The model the plan was made for, loaded and cleaned as `prune` does, but with every key an initializer of its
 * own: an `Identity` that reads an initializer and is named by a key becomes a copy of it under that key (so
 * each key is sliced for its own consumer), and `Transpose(key)` or a scoped `onnx::MatMul_N` feeding a MatMul
 * is listed as an alias of the key. The analysis is unchanged: constants carry no channel spaces.
 */
export function prepareForSpec(file: string): PreparedModel {
  const model = loadModel(file);
  const g = model.graph;
  const transposes = new Map<string, Alias>();
  for (const node of g.iterNodes()) {
    const x = node.inputs[0];
    const y = node.outputs[0];
    if (!x?.initializer || !y || g.outputs.includes(y) || node.domain !== '') continue;
    if (node.opType === 'Identity' && isStateDictKey(y.name)) materialize(model, node, x, y);
    else if (node.opType === 'Transpose' && isStateDictKey(x.name)) {
      const rank = x.initializer.dims.length;
      const perm = node.attrInts('perm') ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
      transposes.set(y.name, { key: x.name, perm });
    }
  }
  cleanupPipeline(new PassManager(), model);
  const aliases = new Map<string, Alias>();
  const keys = new Set(g.initializers.map((v) => v.name).filter(isStateDictKey));
  const scoped = new Map<string, string[]>();
  for (const v of g.initializers) {
    const alias = transposes.get(v.name);
    if (alias) aliases.set(v.name, alias);
    else if (!isStateDictKey(v.name) && v.initializer!.dims.length === 2) {
      const matmul = v.uses.find((u) => u.node.opType === 'MatMul' && u.index === 1)?.node;
      const scope = matmul && scopesOf(matmul.name).at(-1);
      const key = scope && scopedWeightKey(scope, v.initializer!.dims, keys);
      if (key && v.uses.length === 1 && !keys.has(key)) scoped.set(key, [...(scoped.get(key) ?? []), v.name]);
    }
  }
  // Several MatMul weights in one scope (F.linear called twice in a module's forward, Swin's attention): none
  // of them is that scope's Linear.
  const unnamed = new Map<string, [string, number]>();
  for (const [key, names] of scoped)
    if (names.length === 1) aliases.set(names[0]!, { key, perm: [1, 0] });
    else for (const name of names) unnamed.set(name, [key.slice(0, key.lastIndexOf('.')), names.length]);
  return { model, aliases, unnamed };
}

/**
 * The key of a scoped MatMul weight [in, out]: `SCOPE.weight` of a Linear, or `SCOPE.in_proj_weight` of an
 * nn.MultiheadAttention (its packed q/k/v projection: out = 3·in, beside the module's `in_proj_bias` or
 * `out_proj.weight`).
 */
function scopedWeightKey(scope: string, dims: readonly number[], keys: ReadonlySet<string>): string {
  const attention =
    keys.has(`${scope}.in_proj_bias`) || (keys.has(`${scope}.out_proj.weight`) && dims[1] === 3 * dims[0]!);
  return attention ? `${scope}.in_proj_weight` : `${scope}.weight`;
}

/** Replaces the Identity `node` (x -> y) by an initializer named y holding a copy of x's tensor. */
function materialize(model: Model, node: Node, x: Value, y: Value): void {
  const g = model.graph;
  const t = x.initializer!;
  const copy = new Value(g.uniqueName(`${y.name}#copy`), x.type);
  g.replaceAllUsesWith(y, copy);
  g.removeNode(node);
  copy.name = y.name;
  g.addInitializer(copy, Tensor.fromArray(t.dataType, [...t.dims], t.data.slice(), y.name));
}

/** `data` (of ONNX dims `dims`) permuted back to torch's layout: torch dims[perm[i]] = dims[i]. */
export function toTorchLayout(
  data: Float32Array,
  dims: readonly number[],
  perm: readonly number[],
): Float32Array {
  const rank = dims.length;
  const torchDims: number[] = new Array(rank);
  perm.forEach((p, i) => (torchDims[p] = dims[i]!));
  const torchStrides = torchDims.map((_, i) => torchDims.slice(i + 1).reduce((a, b) => a * b, 1));
  const out = new Float32Array(data.length);
  const index = new Array<number>(rank).fill(0);
  for (let k = 0; k < data.length; k++) {
    let at = 0;
    for (let i = 0; i < rank; i++) at += index[i]! * torchStrides[perm[i]!]!;
    out[at] = data[k]!;
    for (let i = rank - 1; i >= 0; i--) {
      if (++index[i]! < dims[i]!) break;
      index[i] = 0;
    }
  }
  return out;
}
