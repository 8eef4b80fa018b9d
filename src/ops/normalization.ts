import type { Node } from '../ir/index.js';
import { normalizationCost, perChannel, slicePerChannel } from './shared.js';
import type { ChannelOp, LinkContext, PerChannel, Space } from './types.js';

const ROLES = ['scale', 'bias', 'mean', 'var'] as const;

/** Per-channel normalisation over axis 1: one to one, and every per-channel vector is sliced. */
function linkNorm(node: Node, ins: readonly (Space | undefined)[], ctx: LinkContext, vectors: number): void {
  const x = ins[0];
  if (
    !x ||
    x.axis !== 1 ||
    ins.slice(1).some(Boolean) ||
    node.inputs.slice(1, vectors + 1).some((v) => !ctx.isConst(v))
  ) {
    ctx.unknown(node, `${node}: unsupported inputs`);
    return;
  }
  if (node.outputs.slice(1).some((o) => o.uses.length > 0))
    ctx.freeze(x, `${node} exports training statistics`);
  const o = ctx.passThrough(x, node, node.outputs[0]!);
  if (!o) return;
  for (let i = 1; i <= vectors; i++) perChannel(ctx, node, i, 0, o, ROLES[i - 1]!);
  ctx.cost(node, 'params', 2, [o]);
  if (node.opType === 'BatchNormalization') ctx.norm(node, o);
}

export const batchNormalization: ChannelOp<PerChannel> = {
  opTypes: ['BatchNormalization'],
  link: (node, ins, ctx) => linkNorm(node, ins, ctx, 4),
  slice: slicePerChannel,
  cost: (node) => normalizationCost(node, [3, 4]),
};

export const instanceNormalization: ChannelOp<PerChannel> = {
  opTypes: ['InstanceNormalization'],
  link: (node, ins, ctx) => linkNorm(node, ins, ctx, 2),
  slice: slicePerChannel,
};
