import { Value, type Node } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import { tensorType } from '../ir/types.js';
import { CannotEvaluate, evaluateNode } from '../folding/const-eval.js';
import { dropDanglingValueInfo } from './dead-code.js';
import { analyzeShapes } from './infer-shapes.js';
import type { Pass, PassResult } from './pass-manager.js';
import { outerReferences } from './topo-sort.js';

export interface FoldConstantsOptions {
  /** Constants larger than this (elements) are left computed at run time, to keep the file small. */
  maxElements?: number;
}

export interface FoldConstantsResult extends PassResult {
  /** Nodes replaced by constants. */
  folded: number;
  /** Initializers created for constants that non-constant nodes read. */
  initializers: number;
}

/**
 * Replaces constant subgraphs by initializers: nodes whose every output the shape analysis knows as a
 * constant (all inputs constant, or Shape of a statically shaped value; never the symbolic batch). Only
 * the constants that a remaining node reads become initializers, under their original value names; the
 * folded nodes are removed. Nodes producing a graph output are kept so the output stays a node output.
 */
export const foldConstants: Pass<FoldConstantsOptions | undefined, FoldConstantsResult> = {
  name: 'fold-constants',
  description: 'Replaces constant subgraphs (Constant nodes, pads/shape computations) by initializers.',
  reads: ['initializers', 'Constant nodes', 'static shapes (via shape analysis)', 'graph outputs'],
  changes: ['graph.nodes', 'graph.initializers', 'node inputs', 'graph.valueInfo (dangling entries)'],
  run(model: Model, options: FoldConstantsOptions | undefined) {
    const g = model.graph;
    const maxElements = options?.maxElements ?? 1 << 20;
    const { constants } = analyzeShapes(model, { maxConstantElements: maxElements });
    // Outputs and values that If/Loop/Scan bodies read stay node outputs (a body may return one directly).
    const outputs = new Set([...g.outputs, ...g.nodes.flatMap(outerReferences)]);
    const foldable = new Set<Node>(
      g.nodes.filter(
        (n) =>
          n.subgraphs().length === 0 &&
          n.outputs.every(
            (o) =>
              o.name === '' || (constants.has(o) && !outputs.has(o) && constants.get(o)!.size <= maxElements),
          ),
      ),
    );
    // Materialize the constants that a surviving node (or a subgraph) reads; a node whose constant cannot be
    // copied (external data that is absent) stays, and its own inputs then need materializing: iterate.
    let tensors = new Map<Value, Tensor>();
    for (let changed = true; changed;) {
      changed = false;
      tensors = new Map();
      for (const n of foldable) {
        for (const o of n.outputs) {
          if (!o.uses.some((u) => !foldable.has(u.node))) continue;
          try {
            const t = constants.get(o)!;
            tensors.set(o, Tensor.fromArray(t.dataType, t.dims, t.data.slice(), o.name));
          } catch {
            foldable.delete(n);
            changed = true;
          }
        }
      }
    }
    for (const [old, t] of tensors) {
      const name = old.name;
      old.name = `${name}__folded`;
      const v = new Value(name, tensorType(t.dataType, [...t.dims]));
      v.infoExtra = old.infoExtra;
      g.replaceAllUsesWith(old, v);
      g.addInitializer(v, t);
    }
    const folded = g.nodes.filter((n) => foldable.has(n));
    folded.forEach((n) => n.dropInputs());
    for (const n of folded) g.removeNode(n, false);
    const transposed = foldLargeTransposes(model, outputs);
    dropDanglingValueInfo(g);
    return {
      modified: folded.length + transposed > 0,
      folded: folded.length + transposed,
      initializers: tensors.size + transposed,
    };
  },
};

/**
 * A Transpose of an initializer that nothing else reads folds at any size: the file does not grow (the
 * transposed tensor replaces the original), and the weight of a Linear applied to NHWC activations (ConvNeXt's
 * MLPs export as MatMul(x, Transpose(W))) becomes a constant the channel analysis can slice.
 */
function foldLargeTransposes(model: Model, keep: ReadonlySet<Value>): number {
  const g = model.graph;
  let count = 0;
  for (const n of [...g.nodes]) {
    const x = n.inputs[0];
    const out = n.outputs[0];
    if (n.opType !== 'Transpose' || n.domain !== '' || !x?.initializer || !out || keep.has(out)) continue;
    if (x.uses.length !== 1 || g.inputs.includes(x) || x.initializer.isExternal) continue;
    let t: Tensor;
    try {
      t = evaluateNode(n, [x.initializer], model.opset, { maxElements: Number.MAX_SAFE_INTEGER })[0]!;
    } catch (e) {
      if (e instanceof CannotEvaluate) continue;
      throw e;
    }
    const name = out.name;
    out.name = `${name}__folded`;
    const v = new Value(name, tensorType(t.dataType, [...t.dims]));
    v.infoExtra = out.infoExtra;
    g.replaceAllUsesWith(out, v);
    g.addInitializer(v, Tensor.fromArray(t.dataType, t.dims, t.data, name));
    n.dropInputs();
    g.removeNode(n, false);
    g.removeInitializer(x);
    count++;
  }
  return count;
}
