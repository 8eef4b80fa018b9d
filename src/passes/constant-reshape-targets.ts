import { constantOf, intToNumber, Tensor, Value, type Node } from '../ir/index.js';
import type { Model } from '../ir/model.js';
import { tensorType } from '../ir/types.js';
import { DataType } from '../ir/data-type.js';
import { analyzeShapes } from './infer-shapes.js';
import type { Pass, PassResult } from './pass-manager.js';

export interface ConstantReshapeTargetsResult extends PassResult {
  /** Reshapes whose computed target became a constant. */
  rewritten: number;
}

/**
 * torch exports `x.view(T, B * H, D)` and `x.view(T * B, C)` with targets computed from `Shape` at run time.
 * Pruning must rewrite the entries that name channel counts, which it can only do in a constant; and a
 * computed `B * H` would keep the old head count. So a computed target becomes a constant where that keeps
 * the meaning at every input size: static entries as numbers, an entry that reads the same dim of a tensor
 * whose dim provably equals the input's dim at that position as 0 (copy), and one remaining dynamic entry
 * as -1 (inferred from the element count, which the original's computed value had to equal).
 */
export const constantReshapeTargets: Pass<void, ConstantReshapeTargetsResult> = {
  name: 'constant-reshape-targets',
  description: 'Replaces computed Reshape targets by constants using 0 (copy) and -1 where that is exact.',
  reads: ['Reshape nodes and the shape arithmetic of their targets', 'static shapes (via shape analysis)'],
  changes: ['Reshape target inputs', 'graph.initializers'],
  run(model: Model) {
    const g = model.graph;
    // The shape analysis is the cost of this pass, and most CNNs have no computed target left after folding.
    if (!g.nodes.some((n) => n.opType === 'Reshape' && n.inputs[1] && !constantOf(n.inputs[1])))
      return { modified: false, rewritten: 0 };
    const { values, info } = analyzeShapes(model);
    const rankOf: RankOf = (v) => (v ? info.get(v)?.shape?.length : undefined);
    let rewritten = 0;
    for (const node of g.iterNodes()) {
      if (node.opType !== 'Reshape' || node.attrInt('allowzero', 0) !== 0) continue;
      const target = node.inputs[1];
      if (!target || constantOf(target)) continue;
      const known = values.get(target);
      const entries = known && constantTarget(node, target, known, rankOf);
      if (!entries) continue;
      const v = new Value(
        g.uniqueName(`${target.name}_constant`),
        tensorType(DataType.INT64, [entries.length]),
      );
      g.addInitializer(v, Tensor.int64(entries));
      node.setInput(1, v);
      rewritten++;
    }
    return { modified: rewritten > 0, rewritten };
  },
};

/** The constant target equal to the computed one at every input size, or undefined when there is none. */
function constantTarget(
  node: Node,
  target: Value,
  known: readonly (number | string | null)[],
  rankOf: RankOf,
): number[] | undefined {
  const x = node.inputs[0]!;
  const pieces = scalarPieces(target, known.length);
  const out: (number | undefined)[] = known.map((d, i) => {
    if (typeof d === 'number') return d;
    const dim = pieces?.[i] && shapeDimRead(pieces[i]!, rankOf);
    return dim && sameDim(dim, { value: x, axis: i }, rankOf) ? 0 : undefined;
  });
  const open = out.filter((d) => d === undefined).length;
  if (open > 1 || (open === 1 && out.includes(-1))) return undefined;
  return out.map((d) => d ?? -1);
}

/** For a 1-D target built by Concat of one-element pieces, the scalar value behind each element. */
function scalarPieces(target: Value, length: number): (Value | undefined)[] | undefined {
  const concat = target.producer;
  if (concat?.opType !== 'Concat' || concat.inputs.length !== length) return undefined;
  return concat.inputs.map((piece) => {
    const p = piece?.producer;
    if (p?.opType === 'Unsqueeze') return p.inputs[0];
    return undefined;
  });
}

type RankOf = (v: Value | undefined) => number | undefined;

interface DimRef {
  value: Value;
  axis: number;
}

/** `Gather(Shape(Y), j)` (through Casts) as the dim it reads. */
function shapeDimRead(scalar: Value, rankOf: RankOf): DimRef | undefined {
  let v: Value | undefined = scalar;
  while (v?.producer?.opType === 'Cast') v = v.producer.inputs[0];
  const gather = v?.producer;
  if (gather?.opType !== 'Gather' || gather.attrInt('axis', 0) !== 0) return undefined;
  const shape = gather.inputs[0]?.producer;
  const index = constantOf(gather.inputs[1]);
  if (shape?.opType !== 'Shape' || !index || index.size !== 1 || shape.attributes.size > 0) return undefined;
  const y = shape.inputs[0];
  const rank = rankOf(y);
  const j = intToNumber(index.data[0]!);
  if (!y || rank === undefined) return undefined;
  return { value: y, axis: j < 0 ? j + rank : j };
}

function sameDim(a: DimRef, b: DimRef, rankOf: RankOf): boolean {
  const ra = dimRoot(a, rankOf);
  const rb = dimRoot(b, rankOf);
  return ra.value === rb.value && ra.axis === rb.axis;
}

const SAME_SHAPE_UNARY = new Set([
  'Cast',
  'Identity',
  'Relu',
  'Erf',
  'Gelu',
  'Sigmoid',
  'Tanh',
  'Softmax',
  'Sqrt',
  'Neg',
]);
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div']);

/** Follows a dim back through ops that pass it on unchanged, to the tensor where it first appears. */
function dimRoot(ref: DimRef, rankOf: RankOf): DimRef {
  for (let depth = 0; depth < 64; depth++) {
    const p = ref.value.producer;
    const next = p && previousDim(p, ref, rankOf);
    if (!next) return ref;
    ref = next;
  }
  return ref;
}

function previousDim(p: Node, { value, axis }: DimRef, rankOf: RankOf): DimRef | undefined {
  const x = p.inputs[0];
  const rank = rankOf(value);
  if (!x || rank === undefined || p.outputs[0] !== value) return undefined;
  if (p.opType === 'Transpose') {
    const perm = p.attrInts('perm');
    return perm ? { value: x, axis: perm[axis]! } : undefined;
  }
  if (SAME_SHAPE_UNARY.has(p.opType)) return rankOf(x) === rank ? { value: x, axis } : undefined;
  if (p.opType === 'MatMul') {
    // A Linear layer: every dim but the last comes from A when B is a constant matrix.
    const b = constantOf(p.inputs[1]);
    return b?.dims.length === 2 && axis < rank - 1 && rankOf(x) === rank ? { value: x, axis } : undefined;
  }
  if (BINARY.has(p.opType)) {
    const [a, b] = p.inputs;
    const c = constantOf(a) ?? constantOf(b);
    const live = constantOf(a) ? b : constantOf(b) ? a : undefined;
    // The constant must not widen the dim by broadcasting: rank at most the output's, size 1 where it aligns.
    const offset = rank - (c?.dims.length ?? rank + 1);
    const aligned = axis - offset;
    const passes = offset >= 0 && (aligned < 0 || c!.dims[aligned] === 1);
    return live && passes && rankOf(live) === rank ? { value: live, axis } : undefined;
  }
  if (p.opType === 'Slice') {
    const axes = constantOf(p.inputs[3]);
    if (!axes) return undefined;
    const sliced = axes.toNumbers().map((a) => (a < 0 ? a + rank : a));
    return sliced.includes(axis) ? undefined : { value: x, axis };
  }
  return undefined;
}
