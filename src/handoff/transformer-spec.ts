import { UserError } from '../errors.js';
import { constantOf, type Model, type Node, type Value } from '../ir/index.js';
import { loadModel } from '../ir/load.js';
import { reshape } from '../ops/reshape.js';
import type { Space } from '../ops/types.js';
import type { GroupAnalysis } from '../prune/groups.js';
import { keptPositions } from '../prune/rewrite.js';
import { scopesOf } from './aliases.js';
import type { AttentionSpec, ParamSpec, ViewSpec } from './torch-spec.js';

/**
 * What a transformer's torch modules need beyond sliced parameters: the heads each nn.MultiheadAttention keeps
 * (from the head-split Reshapes of its forward, whose head axis is a channel space of the analysis) and the
 * fixed channel counts a module's own forward reshapes to. Both are read from adapruner's own analysis and
 * rewrite of the plan, as the rest of the spec.
 */

interface HeadSplit {
  output: Space;
  target: number[];
}

/**
 * One entry per attention module whose heads or width the plan changes. Refuses an attention whose forward the
 * Python side cannot rewrite: one that is not torch's nn.MultiheadAttention with a packed `in_proj_weight`
 * (Swin's ShiftedWindowAttention computes `C // num_heads` from the width it reads), or one whose head Reshapes
 * have no module scope.
 */
export function attentionSpecs(
  analysis: GroupAnalysis,
  keep: readonly Uint8Array[],
  params: readonly ParamSpec[],
  where: string,
): AttentionSpec[] {
  const kept = keptPositions(analysis, keep);
  const byName = new Map(params.map((p) => [p.name, p]));
  const byPath = new Map<string, AttentionSpec>();
  for (const r of analysis.records) {
    if (r.op !== reshape) continue;
    const data = r.data as Partial<HeadSplit> & { kind?: string };
    if (data.kind !== 'headSplit' && data.kind !== 'stackedHeadSplit') continue;
    const { output, target } = data as HeadSplit;
    const heads = Array.from(kept[output.id]!);
    const path = scopesOf(r.node.name).at(-1);
    const changed =
      heads.length < output.size ||
      params.some((p) => path !== undefined && p.name.startsWith(`${path}.`) && Object.keys(p.keep).length);
    if (!changed) continue;
    const inProj = path === undefined ? undefined : byName.get(`${path}.in_proj_weight`);
    if (path === undefined || !inProj)
      throw new UserError(
        path === undefined
          ? `the plan changes the attention heads that '${r.node.name}' splits, and its name has no module scope (export with torch >= 1.13)`
          : `the plan changes the heads or width of attention '${path}', which is not torch's nn.MultiheadAttention (no '${path}.in_proj_weight'): export-torch cannot rewrite its forward (prune it with its heads and the stream kept)`,
        where,
      );
    const spec: AttentionSpec = {
      path,
      heads: output.size,
      kept: heads,
      headDim: target[output.axis + 1]!,
      embedDim: inProj.pruned[1]!,
    };
    if (inProj.pruned[0] !== 3 * heads.length * spec.headDim)
      throw new UserError(
        `'${inProj.name}' keeps ${inProj.pruned[0]} rows, not 3 x ${heads.length} heads x ${spec.headDim}: the heads of '${path}' are not cut whole`,
        where,
      );
    const seen = byPath.get(path);
    if (seen && JSON.stringify(seen) !== JSON.stringify(spec))
      throw new UserError(`the q, k and v heads of '${path}' are cut differently`, where);
    byPath.set(path, spec);
  }
  return [...byPath.values()];
}

/** The ops whose shape input a forward's ints make (view/reshape, expand, zeros/full): op -> input index. */
const SHAPED = new Map([
  ['Reshape', 1],
  ['Expand', 1],
  ['ConstantOfShape', 0],
]);

/**
 * The fixed channel counts of Reshape, Expand and ConstantOfShape targets that the rewrite changed, outside the attention
 * modules (whose replacement forward computes its own views), where the raw export has the entry as a literal
 * (a Python int in the forward) rather than computed from a tensor's shape (ShuffleNet's channels per group:
 * torch recomputes those itself).
 */
export function viewSpecs(
  modelFile: string,
  original: Model,
  pruned: Model,
  attention: readonly AttentionSpec[],
): ViewSpec[] {
  const twins = new Map(pruned.graph.nodes.map((n) => [n.name, n]));
  let raw: Map<string, Node> | undefined;
  const out = new Map<string, ViewSpec>();
  for (const node of original.graph.nodes) {
    const at = SHAPED.get(node.opType);
    if (at === undefined) continue;
    const before = targetEntries(node.inputs[at]);
    const after = targetEntries(twins.get(node.name)?.inputs[at]);
    if (!before || !after || before.length !== after.length) continue;
    const path = node.name.startsWith('/') ? (scopesOf(node.name).at(-1) ?? '') : undefined;
    if (path !== undefined && attention.some((a) => path === a.path || path.startsWith(`${a.path}.`)))
      continue;
    for (let i = 0; i < before.length; i++) {
      const [b, a] = [before[i]!, after[i]!];
      if (Number.isNaN(b) || b === a) continue;
      raw ??= new Map(loadModel(modelFile).graph.nodes.map((n) => [n.name, n]));
      if (!literalAt(raw.get(node.name)?.inputs[at], i)) continue;
      if (path === undefined)
        throw new UserError(
          `the plan changes the fixed ${b} channels '${node.name}' reshapes to, and its name has no module scope (export with torch >= 1.13)`,
          modelFile,
        );
      const seen = out.get(`${path}\0${b}`);
      if (seen && seen.after !== a)
        throw new UserError(
          `module '${path || '(the model)'}' reshapes to a fixed ${b} channels in two places that the plan cuts differently (${seen.after} and ${a})`,
          modelFile,
        );
      out.set(`${path}\0${b}`, { path, before: b, after: a });
    }
  }
  return [...out.values()];
}

/** A target's entries: a constant, or a Concat of constants and computed scalars (NaN); undefined otherwise. */
function targetEntries(v: Value | undefined): number[] | undefined {
  const c = constantOf(v);
  if (c) return c.toNumbers();
  const concat = v?.producer;
  if (concat?.opType !== 'Concat') return undefined;
  const out: number[] = [];
  for (const piece of concat.inputs) {
    const p = constantOf(piece);
    if (p) out.push(...p.toNumbers());
    else if (piece?.producer?.opType === 'Unsqueeze') out.push(NaN);
    else return undefined;
  }
  return out;
}

/** Whether entry `at` of a raw export's target is a literal: a constant, or a constant scalar unsqueezed. */
function literalAt(target: Value | undefined, at: number): boolean {
  if (constantOf(target)) return true;
  const concat = target?.producer;
  if (concat?.opType !== 'Concat') return false;
  let start = 0;
  for (const piece of concat.inputs) {
    const c = constantOf(piece);
    const unsqueezed = piece?.producer?.opType === 'Unsqueeze' ? piece.producer.inputs[0] : undefined;
    const scalar = unsqueezed && constantOf(unsqueezed);
    let length: number;
    if (c) length = c.dims.reduce((x, y) => x * y, 1);
    else if (unsqueezed) length = 1;
    else return false;
    if (at < start + length) return c !== undefined || (scalar !== undefined && scalar.dims.length === 0);
    start += length;
  }
  return false;
}
