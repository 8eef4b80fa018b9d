import { constantOf, type Node } from '../ir/index.js';
import type { ChannelOp, LinkContext, Space } from './types.js';

/** The Expand shape's entry to rewrite to the kept count (undefined: the shape leaves the channel dim alone). */
interface ExpandData {
  output: Space;
  entry: number | undefined;
}

/**
 * Expand. Tracked data passes through when the shape leaves its channel dim alone (1, or the count itself in a
 * constant shape, which is rewritten). Untracked data broadcast from 1 to n copies along one axis by a
 * constant shape (torch's `key_padding_mask.view(B, 1, 1, T).expand(-1, H, -1, -1)`) starts a space of
 * copies there: it links with whatever the copies meet (the heads of attention scores), and the shape entry
 * becomes the kept count. A group of nothing but copies has no filters and is frozen (groups.ts).
 */
export const expand: ChannelOp<ExpandData> = {
  opTypes: ['Expand'],

  startsSpaces(node) {
    // Decided in link, where the dims are known: non-constant data and a constant shape.
    return !constantOf(node.inputs[0]) && constantOf(node.inputs[1]) !== undefined;
  },

  link(node, ins, ctx) {
    const [x, shapeSpace] = ins;
    const out = node.outputs[0]!;
    if (shapeSpace) return ctx.unknown(node, `${node}: its shape is channel data`);
    if (!x) {
      const axis = broadcastAxis(node, ctx);
      const o = axis === undefined ? undefined : ctx.newSpace(out, axis);
      if (!o) return;
      ctx.record<ExpandData>(node, { output: o, entry: axis });
      return;
    }
    linkTracked(node, x, ctx);
  },

  slice(node, { output, entry }, ctx) {
    if (entry === undefined || !ctx.changed(output)) return;
    const shape = constantOf(node.inputs[1])!;
    const values = shape.toNumbers();
    values[entry] = ctx.kept(output).length;
    ctx.setInput(node, 1, ctx.ints(shape, values));
  },
};

function linkTracked(node: Node, x: Space, ctx: LinkContext): void {
  const out = node.outputs[0]!;
  const rank = ctx.dims(out)?.length;
  const xd = ctx.dims(node.inputs[0]);
  const shape = ctx.ints(node.inputs[1]);
  if (rank === undefined || !xd || !shape) return ctx.unknown(node, `${node}: shape unknown`);
  const axis = x.axis + rank - xd.length;
  const at = axis - (rank - shape.length);
  const named = at >= 0 ? shape[at] : 1;
  if (named !== 1 && named !== x.size) return ctx.unknown(node, `${node} broadcasts the channel axis`);
  const o = ctx.passThrough(x, node, out, axis);
  if (!o) return;
  if (named === x.size && !constantOf(node.inputs[1]))
    return ctx.freeze(o, `${node}: a computed shape names the channel count`);
  ctx.record<ExpandData>(node, { output: o, entry: named === x.size ? at : undefined });
}

/**
 * The one output axis an Expand of non-constant data broadcasts from 1 to n > 1 by a constant shape at least as
 * long as the data's rank (so output axis i is shape entry i).
 */
function broadcastAxis(node: Node, ctx: LinkContext): number | undefined {
  const x = node.inputs[0];
  const shape = constantOf(node.inputs[1]);
  if (!x || constantOf(x) || !shape) return undefined;
  const xd = ctx.dims(x);
  const target = shape.toNumbers();
  if (!xd || target.length < xd.length) return undefined;
  const offset = target.length - xd.length;
  const axes = target.flatMap((n, i) => (i >= offset && xd[i - offset] === 1 && n > 1 ? [i] : []));
  return axes.length === 1 ? axes[0] : undefined;
}
