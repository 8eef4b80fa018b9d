import type { Node } from '../ir/index.js';
import type { ChannelOp } from './types.js';

/** Ops a LayerNorm's mean and variance flow through before they meet the channels again (x - mean, / std). */
const STATISTIC_USES = new Set(['Sub', 'Div', 'Add', 'Mul', 'Sqrt', 'Reciprocal', 'Pow']);

/**
 * A ReduceMean over the channel axis alone, keeping it as a size-1 dim, whose result only flows through
 * arithmetic back onto the channels: the mean and the variance of a LayerNorm over channels as exporters
 * write it below opset 17 (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div; ConvNeXt).
 */
function isChannelStatistic(node: Node, axes: number[], channelAxis: number): boolean {
  if (node.opType !== 'ReduceMean' || node.attrInt('keepdims', 1) !== 1) return false;
  if (axes.length !== 1 || axes[0] !== channelAxis) return false;
  const seen = new Set<Node>();
  const flowsToChannels = (n: Node, depth: number): boolean =>
    depth < 6 &&
    n.outputs[0]!.uses.length > 0 &&
    n.outputs[0]!.uses.every(({ node: u }) => {
      if (!STATISTIC_USES.has(u.opType)) return false;
      if (seen.has(u)) return true;
      seen.add(u);
      // Sub/Div/Mul with the channel data end the chain; Add (eps), Sqrt, Reciprocal, Pow continue it.
      return ['Sub', 'Div', 'Mul'].includes(u.opType) || flowsToChannels(u, depth + 1);
    });
  return flowsToChannels(node, 0);
}

/**
 * Reductions over axes other than the channels: one to one (the channel axis moves when dims are dropped).
 * A LayerNorm statistic over the channels (isChannelStatistic) carries no channels itself: after pruning it
 * is taken over the kept channels, as a LayerNorm over the narrower tensor is.
 */
export const reduce: ChannelOp = {
  opTypes: [
    'ReduceMean',
    'ReduceSum',
    'ReduceMax',
    'ReduceMin',
    'ReduceL1',
    'ReduceL2',
    'ReduceProd',
    'ReduceLogSumExp',
    'ReduceSumSquare',
  ],

  link(node, ins, ctx) {
    const x = ins[0];
    const d = ctx.dims(node.inputs[0]);
    const e = ctx.dims(node.outputs[0]);
    if (!x || !d || !e) return ctx.unknown(node, `${node}: unsupported inputs`);
    const axesIn =
      node.attrInts('axes') ?? (node.inputs[1] ? ctx.ints(node.inputs[1]) : undefined) ?? d.map((_, i) => i);
    const axes = axesIn.map((a) => (a < 0 ? a + d.length : a));
    if (isChannelStatistic(node, axes, x.axis)) return;
    if (axes.includes(x.axis)) return ctx.unknown(node, `${node} reduces over channels`);
    const keep = node.attrInt('keepdims', 1) === 1;
    ctx.passThrough(
      x,
      node,
      node.outputs[0]!,
      keep ? x.axis : x.axis - axes.filter((a) => a < x.axis).length,
    );
  },
};
