import type { ChannelOp, Space } from './types.js';

/**
 * DepthToSpace and SpaceToDepth move channels into space and back in blocks of b x b. Each narrow-side
 * channel c owns b*b wide-side channels (DCR order: k*C + c; CRD: c*b*b + k); keeping c keeps all of them,
 * and in both orders the kept wide channels stay in the layout the same op reads, so nothing is rewritten.
 */
export const depthToSpace: ChannelOp = {
  opTypes: ['DepthToSpace', 'SpaceToDepth'],

  link(node, ins, ctx) {
    const x = ins[0];
    const out = node.outputs[0];
    if (!x || !out) return ctx.unknown(node, `${node}: unsupported inputs`);
    if (x.axis !== 1) return ctx.unknown(node, `${node} with channels off axis 1`);
    const o = ctx.newSpace(out, 1);
    if (!o) return ctx.freeze(x, `${node}: output shape unknown`);
    const toSpace = node.opType === 'DepthToSpace';
    const [wide, narrow] = toSpace ? [x, o] : [o, x];
    const blocks = wide.size / narrow.size;
    const b = node.attrInt('blocksize', 1);
    if (!Number.isInteger(blocks) || blocks !== b * b) {
      ctx.freeze(wide, `${node}: channel counts do not match its block size`);
      return ctx.freeze(narrow, `${node}: channel counts do not match its block size`);
    }
    // SpaceToDepth always orders depth as DCR; DepthToSpace says which.
    const crd = toSpace && node.attrString('mode', 'DCR') === 'CRD';
    linkBlocks(ctx, wide, narrow, blocks, crd);
  },
};

function linkBlocks(
  ctx: Parameters<ChannelOp['link']>[2],
  wide: Space,
  narrow: Space,
  blocks: number,
  crd: boolean,
): void {
  const c = narrow.size;
  for (let k = 0; k < blocks; k++)
    for (let j = 0; j < c; j++) ctx.link(wide, crd ? j * blocks + k : k * c + j, narrow, j);
}
