import { DataType, constantOf, type Node } from '../ir/index.js';
import { perChannel, slicePerChannel } from './shared.js';
import type { ChannelOp, PerChannel } from './types.js';

/**
 * Gather. An embedding lookup, Gather(constant table [V, C], ids) along axis 0, starts a channel space on the
 * output's last axis: channel c is the table's column c (sliced by the rewrite; its column is the filter that
 * scores it). Gather of tracked data along another axis (a class token picked as x[:, 0]) carries the channels
 * to where the axis lands; gathering along the channel axis itself picks channels, and freezes them.
 */
export const gather: ChannelOp<PerChannel> = {
  opTypes: ['Gather'],

  startsSpaces(node) {
    return isEmbedding(node);
  },

  link(node, ins, ctx) {
    const [data, indices] = ins;
    const out = node.outputs[0]!;
    if (indices) return ctx.unknown(node, `${node} indexes with channel data`);
    const rank = ctx.dims(node.inputs[0])?.length ?? constantOf(node.inputs[0])?.dims.length ?? 0;
    const raw = node.attrInt('axis', 0);
    const axis = raw < 0 ? raw + rank : raw;
    if (!data) {
      if (!isEmbedding(node)) return;
      const outRank = ctx.dims(out)?.length ?? 0;
      const o = ctx.newSpace(out, outRank - 1);
      if (!o) return;
      const table = constantOf(node.inputs[0])!;
      ctx.producer(node, o, { weight: table, len: table.dims[0]!, rowStep: 1, stride: table.dims[1]! });
      perChannel(ctx, node, 0, 1, o, 'operand');
      return;
    }
    if (axis === data.axis) return ctx.unknown(node, `${node} picks channels`);
    const indexRank = ctx.dims(node.inputs[1])?.length ?? 0;
    const at = data.axis < axis ? data.axis : data.axis - 1 + indexRank;
    ctx.passThrough(data, node, out, at);
  },

  slice: slicePerChannel,
};

/** Gather(constant float table [V, C], ids) along axis 0: a token, position or type embedding. */
function isEmbedding(node: Node): boolean {
  const table = constantOf(node.inputs[0]);
  return table?.dims.length === 2 && table.dataType === DataType.FLOAT && node.attrInt('axis', 0) === 0;
}
