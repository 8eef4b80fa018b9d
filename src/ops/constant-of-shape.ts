import type { ChannelOp } from './types.js';

/**
 * ConstantOfShape(Shape(x)): a constant tensor shaped like x (torch's `masked_fill` exports one as the fill
 * for Where). Computed at run time from the pruned x, it carries x's channels one to one (shape.ts lets the
 * Shape read the count for it).
 */
export const constantOfShape: ChannelOp = {
  opTypes: ['ConstantOfShape'],

  startsSpaces(node) {
    return isShapeOfWhole(node);
  },

  link(node, _ins, ctx) {
    const x = isShapeOfWhole(node) ? ctx.carried(node.inputs[0]!.producer!.inputs[0]) : undefined;
    if (x) ctx.passThrough(x, node, node.outputs[0]!);
  },
};

function isShapeOfWhole(node: Parameters<NonNullable<ChannelOp['startsSpaces']>>[0]): boolean {
  const shape = node.inputs[0]?.producer;
  return shape?.opType === 'Shape' && !shape.attributes.has('start') && !shape.attributes.has('end');
}
