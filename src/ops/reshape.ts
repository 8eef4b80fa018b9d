import { constantOf, Tensor } from '../ir/index.js';
import { prod } from './shared.js';
import type { Node, Value } from '../ir/index.js';
import type { ChannelOp, LinkContext, Space } from './types.js';

interface ReshapeData {
  output: Space;
  shape: number[];
}

/**
 * A Reshape splitting the channel axis into heads merged with the axis before it, [.., B, H·D] -> [.., B·H, D]
 * (torch's attention `q.view(T, B * H, D)`): `target` is the constant target, whose entry before the channel
 * axis is -1 (inferred) or B·H (rewritten to B·H').
 */
interface HeadSplitData {
  kind: 'headSplit' | 'stackedHeadSplit';
  output: Space;
  target: number[];
}

/**
 * A computed target (Concat of shape pieces) whose channel entry is a constant piece: the piece is rewritten
 * and the computed entries stay computed (Swin's `attn.view(B // nW, nW, H, N, N)`).
 */
interface PieceData {
  kind: 'piece';
  output: Space;
  /** The target Concat's input holding the channel entry, and where in it. */
  index: number;
  offset: number;
  /**
   * Set when the piece is Unsqueeze(Mul(batch, H)), the heads merged with the batch (`B * H`): the input of
   * the Mul holding the constant H, rewritten to the kept count.
   */
  scaled?: number;
}

/** A Reshape splitting the channel axis into [groups, C/groups] (a channel shuffle's first step). */
interface ChannelSplitData {
  kind: 'channelSplit';
  output: Space;
  groups: number;
  /** The output dims (probe) after the split axes: written as constants in the new target. */
  trailing: number[];
}

/**
 * Flatten, Reshape, Squeeze, Unsqueeze: the channel axis maps to one output axis, possibly merged with the dims
 * after it, so output feature f belongs to channel floor(f / block) (GAP -> Flatten, or 32x4x4 -> 512 before a
 * Gemm). A Reshape whose constant target names the channel count has it rewritten.
 */
export const reshape: ChannelOp<ReshapeData | ChannelSplitData | HeadSplitData | PieceData> = {
  opTypes: ['Reshape', 'Flatten', 'Squeeze', 'Unsqueeze'],

  link(node, ins, ctx) {
    const x = ins[0];
    const d = ctx.dims(node.inputs[0]);
    const e = ctx.dims(node.outputs[0]);
    if (!x || !d || !e || ins.slice(1).some(Boolean)) return ctx.unknown(node, `${node}: unsupported inputs`);
    const b = channelAxisAfter(d, e, x.axis, x.size);
    if (
      b < 0 &&
      node.opType === 'Reshape' &&
      isChannelSplit(d, e, x.axis) &&
      node.attrInt('allowzero', 0) === 0
    )
      return linkChannelSplit(node, x, e, ctx);
    if (b < 0 && node.opType === 'Reshape' && isChannelMerge(d, e, x.axis))
      return linkChannelMerge(node, x, d, ctx);
    if (b < 0 && node.opType === 'Reshape' && isHeadSplit(d, e, x.axis))
      return linkHeadSplit(node, x, d, e, ctx);
    if (b < 0 && node.opType === 'Reshape' && isStackedHeadSplit(d, e, x.axis))
      return linkStackedHeadSplit(node, x, e, ctx);
    if (b < 0) return ctx.unknown(node, `${node} splits or merges the channel axis with the batch`);
    const o = ctx.newSpace(node.outputs[0]!, b)!;
    const block = o.size / x.size;
    for (let f = 0; f < o.size; f++) ctx.link(x, Math.floor(f / block), o, f);
    if (node.opType === 'Reshape') {
      const target = ctx.ints(node.inputs[1]);
      if (!target) ctx.freeze(o, `${node}: target shape unknown`);
      else if (target[b]! > 0) {
        const piece = constantOf(node.inputs[1]) ? undefined : constantPiece(node.inputs[1]!, b, o.size, ctx);
        if (piece) ctx.record<PieceData>(node, { kind: 'piece', output: o, ...piece });
        else if (!constantOf(node.inputs[1]))
          ctx.freeze(o, `${node}: computed target shape names the channel count`);
        else ctx.record<ReshapeData>(node, { output: o, shape: target });
      }
    }
    if (
      (node.opType === 'Squeeze' || node.opType === 'Unsqueeze') &&
      node.inputs[1] &&
      !ctx.ints(node.inputs[1])
    )
      ctx.freeze(o, `${node}: axes unknown`);
  },

  slice(node, data, ctx) {
    if (!ctx.changed(data.output)) return;
    if ('kind' in data && data.kind === 'piece') {
      // The rewrite works on a copy of the model: reach the Concat from this node, not from the analysis.
      const concat = node.inputs[1]!.producer!;
      if (data.scaled !== undefined) {
        const mul = concat.inputs[data.index]!.producer!.inputs[0]!.producer!;
        const h = constantOf(mul.inputs[data.scaled])!;
        const heads = ctx.ints(h, [ctx.kept(data.output).length]);
        // Keep H's own dims (torch writes a scalar): a 1-D factor would turn B·H into a vector.
        ctx.setInput(mul, data.scaled, Tensor.fromArray(heads.dataType, h.dims, heads.data));
        return;
      }
      const piece = constantOf(concat.inputs[data.index])!;
      const values = piece.toNumbers();
      values[data.offset] = ctx.kept(data.output).length;
      ctx.setInput(concat, data.index, ctx.ints(piece, values));
      return;
    }
    if ('kind' in data && data.kind !== 'channelSplit') {
      const target = [...data.target];
      const a = data.output.axis;
      // The heads merge into an axis of size 1 at the probe (linkHeadSplit), so B·H' is written as H'.
      if (target[a]! > 0) target[a] = ctx.kept(data.output).length;
      ctx.setInput(node, 1, ctx.ints(constantOf(node.inputs[1]), target));
      return;
    }
    if ('kind' in data) {
      // [0 (copy) for the dims before, groups, kept per group, the static dims after].
      const before = Array.from({ length: data.output.axis - 1 }, () => 0);
      const target = [...before, data.groups, ctx.kept(data.output).length, ...data.trailing];
      ctx.setInput(node, 1, ctx.ints(constantOf(node.inputs[1]), target));
      return;
    }
    const { output, shape } = data;
    const next = [...shape];
    next[output.axis] = ctx.kept(output).length;
    ctx.setInput(node, 1, ctx.ints(constantOf(node.inputs[1]), next));
  },
};

/** The output axis holding input axis `axis` (of `size`), possibly merged with the dims after it; -1 if none. */
function channelAxisAfter(d: number[], e: number[], axis: number, size: number): number {
  const outer = prod(d.slice(0, axis));
  const inner = prod(d.slice(axis + 1));
  for (let i = 0; i < e.length; i++) {
    const merged = e[i]! / size;
    if (
      prod(e.slice(0, i)) === outer &&
      Number.isInteger(merged) &&
      merged >= 1 &&
      inner % merged === 0 &&
      prod(e.slice(i + 1)) * merged === inner
    )
      return i;
  }
  return -1;
}

/** e is d with the channel axis split in two (both > 1): [..., C, ...] -> [..., g, C/g, ...]. */
function isChannelSplit(d: number[], e: number[], axis: number): boolean {
  if (e.length !== d.length + 1 || e[axis]! < 2 || e[axis + 1]! < 2) return false;
  if (e[axis]! * e[axis + 1]! !== d[axis]) return false;
  return d.every((v, i) => i === axis || v === e[i < axis ? i : i + 1]);
}

/**
 * ShuffleNet's channel shuffle is Reshape [N, g, C/g, H, W], Transpose(1, 2), Reshape [N, C, H, W]. The split
 * makes a space on the C/g axis whose position i is input channels j·C/g + i for every j: one class, so every
 * block of C/g keeps the same positions (the equal-split constraint) and the shuffle stays a shuffle of the
 * narrower tensor. The Transpose moves the axis; the final Reshape merges it back (feature i·g + j is class i).
 */
function linkChannelSplit(node: Node, x: Space, e: number[], ctx: LinkContext): void {
  const groups = e[x.axis]!;
  const o = ctx.newSpace(node.outputs[0]!, x.axis + 1)!;
  for (let j = 0; j < groups; j++) for (let i = 0; i < o.size; i++) ctx.link(x, j * o.size + i, o, i);
  ctx.record<ChannelSplitData>(node, {
    kind: 'channelSplit',
    output: o,
    groups,
    trailing: e.slice(x.axis + 2),
  });
}

/** e is d with the channel axis (of H·D) split into heads merged into the axis before and D: [.., B·H, D]. */
function isHeadSplit(d: number[], e: number[], axis: number): boolean {
  if (axis < 1 || e.length !== d.length) return false;
  const heads = e[axis - 1]! / d[axis - 1]!;
  return (
    Number.isInteger(heads) &&
    heads > 1 &&
    heads * e[axis]! === d[axis] &&
    d.every((v, i) => i === axis || i === axis - 1 || v === e[i])
  );
}

/**
 * Attention heads: output position h of the head axis (where the heads merge with the batch) is the input's
 * channels h·D .. h·D+D-1, so a head is kept or removed whole and D stays. The rewrite needs a constant target
 * whose D entry is constant; the head entry is -1 or rewritten (constant-reshape-targets makes torch's
 * computed `B * H` a -1).
 */
function linkHeadSplit(node: Node, x: Space, d: number[], e: number[], ctx: LinkContext): void {
  const target = constantOf(node.inputs[1])?.toNumbers();
  const a = x.axis;
  const outer = d[a - 1]!;
  if (!target || target[a] !== e[a] || (target[a - 1] !== -1 && target[a - 1] !== e[a - 1]) || outer !== 1)
    return ctx.unknown(node, `${node} splits the channel axis into heads with a computed or unclear target`);
  const o = ctx.newSpace(node.outputs[0]!, a - 1)!;
  const depth = e[a]!;
  for (let c = 0; c < x.size; c++) ctx.link(x, c, o, Math.floor(c / depth));
  ctx.record<HeadSplitData>(node, { kind: 'headSplit', output: o, target });
}

/** e is d with the channel axis (S·H·D) split into [S, H, D]: Swin's `qkv.reshape(B, N, 3, H, D)`. */
function isStackedHeadSplit(d: number[], e: number[], axis: number): boolean {
  if (e.length !== d.length + 2) return false;
  const [stack, heads, depth] = e.slice(axis, axis + 3) as [number, number, number];
  return (
    stack > 1 &&
    heads > 1 &&
    stack * heads * depth === d[axis] &&
    d.every((v, i) => i === axis || v === e[i < axis ? i : i + 2])
  );
}

/**
 * q, k and v stacked in one projection and split as [S, H, D]: output position h of the H axis is channels
 * s·H·D + h·D + d for every s and d, so a head is kept or removed in q, k and v together. The target's H entry
 * is rewritten; its S and D entries stay.
 */
function linkStackedHeadSplit(node: Node, x: Space, e: number[], ctx: LinkContext): void {
  const target = constantOf(node.inputs[1])?.toNumbers();
  const a = x.axis;
  if (!target || target[a + 1] !== e[a + 1] || target[a + 2] !== e[a + 2])
    return ctx.unknown(node, `${node} splits the channel axis into heads with a computed or unclear target`);
  const o = ctx.newSpace(node.outputs[0]!, a + 1)!;
  const [stack, heads, depth] = e.slice(a, a + 3) as [number, number, number];
  for (let s = 0; s < stack; s++)
    for (let h = 0; h < heads; h++)
      for (let j = 0; j < depth; j++) ctx.link(x, (s * heads + h) * depth + j, o, h);
  ctx.record<HeadSplitData>(node, { kind: 'stackedHeadSplit', output: o, target });
}

/** The constant input of the target's Concat that holds element `at`, and where in it; undefined if none. */
function constantPiece(
  target: Value,
  at: number,
  count: number,
  ctx: LinkContext,
): { index: number; offset: number; scaled?: number } | undefined {
  const concat = target.producer;
  if (concat?.opType !== 'Concat' || target.uses.length !== 1) return undefined;
  let start = 0;
  for (let index = 0; index < concat.inputs.length; index++) {
    const length = ctx.dims(concat.inputs[index])?.[0];
    if (length === undefined) return undefined;
    if (at < start + length) {
      const piece = constantOf(concat.inputs[index]);
      if (piece) return { index, offset: at - start };
      const scaled = length === 1 ? headCountFactor(concat.inputs[index]!, count) : undefined;
      return scaled === undefined ? undefined : { index, offset: 0, scaled };
    }
    start += length;
  }
  return undefined;
}

/**
 * For a piece Unsqueeze(Mul(b, H)) used only here, where the constant H is the channel count at the probe's
 * batch of 1 (the heads merged with the batch), the Mul's input index holding H.
 */
function headCountFactor(piece: Value, count: number): number | undefined {
  const unsqueeze = piece.producer;
  const mul = unsqueeze?.opType === 'Unsqueeze' ? unsqueeze.inputs[0]?.producer : undefined;
  if (!mul || mul.opType !== 'Mul' || piece.uses.length !== 1 || mul.outputs[0]!.uses.length !== 1)
    return undefined;
  const k = [0, 1].find((i) => {
    const c = constantOf(mul.inputs[i]);
    return c !== undefined && c.size === 1 && c.toNumbers()[0] === count && !constantOf(mul.inputs[1 - i]);
  });
  return k;
}

/** e is d with the channel axis merged into the axis before it: [.., g, C/g] -> [.., C] (linkChannelSplit's inverse). */
function isChannelMerge(d: number[], e: number[], axis: number): boolean {
  if (axis < 1 || e.length !== d.length - 1 || e[axis - 1] !== d[axis - 1]! * d[axis]!) return false;
  return e.every((v, i) => i === axis - 1 || v === d[i < axis ? i : i + 1]);
}

/**
 * The channels of a split axis merged back into the full width ([B, T, H, D] -> [B, T, H·D] after attention
 * whose head dim was split with the same positions in every head): output feature j·C/g + i is class i for
 * every j. The target's merged entry must be -1 (inferred); a constant one would need the block count.
 */
function linkChannelMerge(node: Node, x: Space, d: number[], ctx: LinkContext): void {
  const target = constantOf(node.inputs[1])?.toNumbers();
  const a = x.axis - 1;
  if (target?.[a] !== -1)
    return ctx.unknown(node, `${node} merges split channels with a target that names the width`);
  const o = ctx.newSpace(node.outputs[0]!, a)!;
  for (let j = 0; j < d[a]!; j++) for (let i = 0; i < x.size; i++) ctx.link(x, i, o, j * x.size + i);
}
