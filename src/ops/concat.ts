import { constantOf, type Node } from '../ir/index.js';
import type { ChannelOp, LinkContext, Space } from './types.js';

/** A constant joined to channel data along another axis (a class token), sliced with the channels. */
interface JoinedConstant {
  /** The Concat input holding it, directly or through an Expand that broadcasts it over the batch. */
  input: number;
  expanded: boolean;
  axis: number;
  space: Space;
}

/**
 * Concat on the channel axis: input k position j is output position offset_k + j. Along another axis the
 * channels stay where they are: tracked inputs link one to one, and a constant (ViT's class token, possibly
 * Expanded over the batch) is sliced with them; other untracked data freezes the channels.
 */
export const concat: ChannelOp<JoinedConstant[]> = {
  opTypes: ['Concat'],

  link(node, ins, ctx) {
    const out = node.outputs[0]!;
    const od = ctx.dims(out);
    const first = ins.find(Boolean)!;
    const axis = node.attrInt('axis', 0);
    const a = od ? (axis < 0 ? axis + od.length : axis) : -1;
    if (!od || ins.some((s) => s && s.axis !== first.axis))
      return ctx.unknown(node, `${node} concatenates differently laid out data`);
    if (a !== first.axis) return linkAlongOtherAxis(node, ins, first, ctx);
    if (ins.some((s) => !s))
      return ctx.unknown(node, `${node} concatenates untracked data on the channel axis`);
    const o = ctx.newSpace(out, first.axis)!;
    let offset = 0;
    for (const s of ins) {
      for (let j = 0; j < s!.size; j++) ctx.link(s!, j, o, offset + j);
      offset += s!.size;
    }
  },

  slice(node, joined, ctx) {
    for (const { input, expanded, axis, space } of joined) {
      if (!ctx.changed(space)) continue;
      if (expanded) ctx.sliceInput(node.inputs[input]!.producer!, 0, [[axis, space]]);
      else ctx.sliceInput(node, input, [[axis, space]]);
    }
  },
};

function linkAlongOtherAxis(
  node: Node,
  ins: readonly (Space | undefined)[],
  first: Space,
  ctx: LinkContext,
): void {
  const o = ctx.newSpace(node.outputs[0]!, first.axis)!;
  const joined: JoinedConstant[] = [];
  ins.forEach((s, k) => {
    if (s) return ctx.same(s, o, node);
    const found = joinedConstant(node, k, o, ctx);
    if (found) joined.push(found);
    else ctx.freeze(o, `${node} joins channel data with data the analysis does not track`);
  });
  if (joined.length) ctx.record<JoinedConstant[]>(node, joined);
}

/** Input k as a constant with the channels on o's axis, or Expand(such a constant, a shape that keeps them). */
function joinedConstant(node: Node, k: number, o: Space, ctx: LinkContext): JoinedConstant | undefined {
  const v = node.inputs[k]!;
  const rank = ctx.dims(node.outputs[0])!.length;
  const direct = constantOf(v);
  if (direct)
    return direct.dims.length === rank && direct.dims[o.axis] === o.size
      ? { input: k, expanded: false, axis: o.axis, space: o }
      : undefined;
  const expand = v.producer;
  const c = expand?.opType === 'Expand' ? constantOf(expand.inputs[0]) : undefined;
  const shape = expand && ctx.ints(expand.inputs[1]);
  if (!c || !shape || v.uses.length !== 1) return undefined;
  const at = o.axis - (rank - c.dims.length);
  const named = shape[o.axis - (rank - shape.length)];
  // The Expand's shape must leave the channel dim to the constant (1), not name the count itself.
  if (at < 0 || c.dims[at] !== o.size || (named !== undefined && named !== 1)) return undefined;
  return { input: k, expanded: true, axis: at, space: o };
}
