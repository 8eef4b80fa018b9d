import { stringAttr } from '../../ir/attribute.js';
import { constantOf } from '../../ir/constant.js';
import { DataType } from '../../ir/data-type.js';
import type { Value } from '../../ir/graph.js';
import { zeros } from './shape-ops.js';
import type { GradContext, GradRule } from './types.js';

/** Gather's indices as int64 [M, 1] with negative ones wrapped (folded in place when they are constant). */
function flatIndices(ctx: GradContext, indices: Value, dim: number, count: number): Value {
  const e = ctx.e;
  const c = constantOf(indices);
  if (c) {
    const wrapped = Array.from(c.data as ArrayLike<number | bigint>, (v) => {
      const i = Number(v);
      return i < 0 ? i + dim : i;
    });
    return e.reshape(e.ints(wrapped), [count, 1]);
  }
  const i64 = e.op('Cast', [indices], { to: DataType.INT64 });
  const wrapped = e.op('Where', [e.op('Less', [i64, e.ints([0])]), e.add(i64, e.ints([dim])), i64]);
  return e.reshape(wrapped, [count, 1]);
}

/**
 * Gather (an embedding table, a relative-position bias table, x[:, 0]): each dY slice is added into the row of
 * the data it was read from, by one ScatterND with reduction 'add' (opset 16) into zeros, so repeated indices
 * accumulate as torch's embedding_backward does. Another axis than 0 is moved to the front and back.
 */
function gatherGrad(ctx: GradContext): (Value | undefined)[] {
  if (!ctx.needs(0)) return [];
  const e = ctx.e;
  const dataShape = ctx.shape(ctx.node.input(0));
  const idxShape = ctx.shape(ctx.node.input(1));
  const rank = dataShape.length;
  const axis = (ctx.node.attrInt('axis', 0) + rank) % rank;
  const count = idxShape.reduce((a, b) => a * b, 1);
  const rest = dataShape.filter((_, i) => i !== axis);
  // dY is pre + idx + post; the idx axes go first, flattened: [M, pre, post].
  const r = idxShape.length;
  const dyRank = rank - 1 + r;
  const dyPerm = [...Array(r).keys()].map((k) => axis + k);
  for (let a = 0; a < dyRank; a++) if (a < axis || a >= axis + r) dyPerm.push(a);
  let updates = ctx.dy()!;
  if (axis > 0 && r > 0) updates = e.transpose(updates, dyPerm);
  updates = e.reshape(updates, [count, ...rest]);
  const table = [dataShape[axis]!, ...rest];
  const scattered = e.op(
    'ScatterND',
    [zeros(ctx, table), flatIndices(ctx, ctx.node.input(1), dataShape[axis]!, count), updates],
    { reduction: stringAttr('add') },
  );
  if (axis === 0) return [scattered];
  // [D_axis, pre, post] back to pre + [D_axis] + post.
  const back = [...Array(rank).keys()].map((a) => (a < axis ? a + 1 : a === axis ? 0 : a));
  return [e.transpose(scattered, back)];
}

export const gatherRules: Record<string, GradRule> = { Gather: gatherGrad };
