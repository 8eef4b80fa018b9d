import { UserError } from '../errors.js';
import { CannotEvaluate, canEvaluate, evaluateNode, tensorInts } from '../folding/const-eval.js';
import { DataType } from '../ir/data-type.js';
import type { Graph, Node, Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import { tensorType, type Dim } from '../ir/types.js';
import { mergeDim } from '../shapes/dims.js';
import { SHAPE_RULES, type OutputInfo, type RuleContext, type TensorInfo } from '../shapes/rules.js';
import type { Pass, PassResult } from './pass-manager.js';
import { topologicalOrder } from './topo-sort.js';

export interface ShapeInferenceOptions {
  /** Overrides the dims of graph inputs (`--input-shape 1x3x224x224`); others keep their declared dims. */
  inputShapes?: Record<string, Dim[]>;
  /** Also append every inferred intermediate value to graph.valueInfo (for viewers such as Netron). */
  recordValueInfo?: boolean;
  /** Largest constant the analysis computes (elements); bigger constant subgraphs are left symbolic. */
  maxConstantElements?: number;
}

export interface ShapeAnalysis {
  /** Inferred element type and shape of every value of the main graph it could reason about. */
  info: Map<Value, TensorInfo>;
  /** Values whose content is a known constant: initializers, Constant outputs, subgraphs computed from them. */
  constants: Map<Value, Tensor>;
  /** Elements of small integer tensors that are shapes being computed, symbolic where the batch is. */
  values: Map<Value, Dim[]>;
  /** Nodes the analysis could not reason about, one line each (unknown ops, contradictory shapes). */
  warnings: string[];
}

export interface ShapeInferenceResult extends PassResult {
  warnings: string[];
  /** Node outputs given a type. */
  typed: number;
  /** Values appended to graph.valueInfo (recordValueInfo only). */
  recorded: number;
}

const MAX_VALUES = 64;

/**
 * Computes shapes, types and constant contents for the main graph without changing it. Unknown ops and
 * custom domains keep the types the file declares; If/Loop/Scan bodies are not entered.
 */
export function analyzeShapes(model: Model, options: ShapeInferenceOptions = {}): ShapeAnalysis {
  const g = model.graph;
  const opset = model.opset;
  const maxElements = options.maxConstantElements ?? 1 << 20;
  const info = new Map<Value, TensorInfo>();
  const constants = new Map<Value, Tensor>();
  const values = new Map<Value, Dim[]>();
  const warnings: string[] = [];

  const overrides = new Map(Object.entries(options.inputShapes ?? {}));
  for (const name of overrides.keys())
    if (!g.inputs.some((v) => v.name === name))
      throw new UserError(
        `--input-shape names '${name}', which is not a graph input (inputs: ${g.inputs.map((v) => v.name).join(', ')})`,
      );
  const feedable = new Set(g.inputs);
  for (const v of g.inputs) {
    const declared = declaredInfo(v);
    const shape = overrides.get(v.name);
    info.set(v, { elemType: declared.elemType, shape: shape ? [...shape] : declared.shape });
  }
  for (const v of g.initializers) {
    if (feedable.has(v)) continue; // an initializer that is also an input can be overridden at run time
    const t = v.initializer!;
    info.set(v, { elemType: t.dataType, shape: [...t.dims] });
    setConstant(v, t);
  }

  function setConstant(v: Value, t: Tensor): void {
    constants.set(v, t);
    if (
      (t.dataType === DataType.INT64 || t.dataType === DataType.INT32) &&
      t.dims.length <= 1 &&
      t.size <= MAX_VALUES
    ) {
      try {
        values.set(v, tensorInts(t));
      } catch {
        // external data that is absent: the value stays unknown
      }
    }
  }

  const infoOf = (v: Value | undefined): TensorInfo | undefined =>
    v ? (info.get(v) ?? declaredInfo(v)) : undefined;

  for (const node of topologicalOrder(g)) {
    if (node.domain !== '' && node.domain !== 'ai.onnx') {
      warnings.push(`${describe(node)}: custom domain '${node.domain}', keeping declared shapes`);
      keepDeclared(node);
      continue;
    }
    if (tryEvaluate(node)) continue;
    const rule = SHAPE_RULES[node.opType];
    if (!rule) {
      warnings.push(`${describe(node)}: no shape rule, keeping declared shapes`);
      keepDeclared(node);
      continue;
    }
    const ctx: RuleContext = {
      node,
      opset,
      has: (i) => node.inputs[i] !== undefined,
      shape: (i) => infoOf(node.inputs[i])?.shape,
      elemType: (i) => infoOf(node.inputs[i])?.elemType,
      constant: (i) => (node.inputs[i] ? constants.get(node.inputs[i]!) : undefined),
      values: (i) => (node.inputs[i] ? values.get(node.inputs[i]!) : undefined),
    };
    let outs: (OutputInfo | undefined)[];
    try {
      outs = rule(ctx);
    } catch (e) {
      warnings.push(`${describe(node)}: ${(e as Error).message}; keeping declared shapes`);
      keepDeclared(node);
      continue;
    }
    node.outputs.forEach((v, i) => {
      const out = outs[i];
      const merged = merge(out ?? {}, declaredInfo(v));
      info.set(v, merged);
      if (out?.values && merged.shape && merged.shape.length <= 1 && out.values.length <= MAX_VALUES) {
        values.set(v, out.values);
        materialize(v, merged, out.values);
      }
    });
  }
  return { info, constants, values, warnings };

  /** A fully known integer vector (Shape of a static tensor and what is computed from it) is a constant. */
  function materialize(v: Value, t: TensorInfo, vals: Dim[]): void {
    if (!vals.every((d): d is number => typeof d === 'number')) return;
    const dims = t.shape as number[];
    if (dims.some((d) => typeof d !== 'number') || dims.reduce((a, b) => a * b, 1) !== vals.length) return;
    if (t.elemType === DataType.INT64) constants.set(v, Tensor.int64(vals, dims));
    else if (t.elemType === DataType.INT32) constants.set(v, Tensor.fromArray(DataType.INT32, dims, vals));
  }

  function tryEvaluate(node: Node): boolean {
    if (!canEvaluate(node.opType, node.domain) || node.subgraphs().length) return false;
    const inputs: (Tensor | undefined)[] = [];
    for (const v of node.inputs) {
      if (!v) {
        inputs.push(undefined);
        continue;
      }
      const t = constants.get(v);
      if (!t || t.size > maxElements) return false;
      inputs.push(t);
    }
    let results: Tensor[];
    try {
      results = evaluateNode(node, inputs, opset, { maxElements });
    } catch (e) {
      if (!(e instanceof CannotEvaluate))
        warnings.push(`${describe(node)}: cannot evaluate constant (${(e as Error).message})`);
      return false;
    }
    node.outputs.forEach((v, i) => {
      const t = results[i];
      if (!t) return;
      info.set(v, { elemType: t.dataType, shape: [...t.dims] });
      setConstant(v, t);
    });
    return results.length >= node.outputs.filter((v) => v.name !== '').length;
  }

  function keepDeclared(node: Node): void {
    for (const v of node.outputs) info.set(v, declaredInfo(v));
  }
}

function declaredInfo(v: Value): TensorInfo {
  if (v.type?.kind === 'tensor')
    return { elemType: v.type.elemType || undefined, shape: v.type.shape ? [...v.type.shape] : undefined };
  if (v.initializer) return { elemType: v.initializer.dataType, shape: [...v.initializer.dims] };
  return { elemType: undefined, shape: undefined };
}

function merge(inferred: OutputInfo, declared: TensorInfo): TensorInfo {
  const elemType = inferred.elemType ?? declared.elemType;
  const a = inferred.shape;
  const b = declared.shape;
  if (!a) return { elemType, shape: b };
  if (!b || a.length !== b.length) return { elemType, shape: a };
  return { elemType, shape: a.map((d, i) => mergeDim(d, b[i]!)) };
}

function describe(node: Node): string {
  return `node '${node.name}' (${node.domain ? `${node.domain}::` : ''}${node.opType})`;
}

/** Writes analysed types onto the values of `g` (node outputs, plus overridden graph inputs). */
function applyTypes(g: Graph, analysis: ShapeAnalysis, options: ShapeInferenceOptions): ShapeInferenceResult {
  let typed = 0;
  let recorded = 0;
  const listed = new Set(g.valueInfo);
  const outputs = new Set(g.outputs);
  for (const v of g.inputs) {
    const shape = options.inputShapes?.[v.name];
    if (shape && v.type?.kind === 'tensor') v.type = tensorType(v.type.elemType, [...shape]);
  }
  for (const node of g.nodes) {
    for (const v of node.outputs) {
      const t = analysis.info.get(v);
      if (!v.name || !t || t.elemType === undefined || v.type?.kind === 'other') continue;
      v.type = tensorType(t.elemType, t.shape);
      typed++;
      if (options.recordValueInfo && !listed.has(v) && !outputs.has(v)) {
        g.valueInfo.push(v);
        listed.add(v);
        recorded++;
      }
    }
  }
  return { modified: typed + recorded > 0, warnings: analysis.warnings, typed, recorded };
}

export const inferShapes: Pass<ShapeInferenceOptions | undefined, ShapeInferenceResult> = {
  name: 'infer-shapes',
  description:
    'Infers element types and shapes of every node output (symbolic batch kept), using constant shape subgraphs.',
  reads: [
    'graph inputs and their declared types',
    'initializers',
    'node attributes',
    'declared value_info (unknown ops)',
  ],
  changes: [
    'value types of node outputs',
    'graph input types (inputShapes only)',
    'graph.valueInfo (recordValueInfo only)',
  ],
  run(model: Model, options: ShapeInferenceOptions | undefined) {
    const opts = options ?? {};
    return applyTypes(model.graph, analyzeShapes(model, opts), opts);
  },
};
