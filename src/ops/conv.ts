import { constantOf, intAttr, type Node } from '../ir/index.js';
import { constDims, layerCost, prod, staticDims, weightDims } from './shared.js';
import type { ChannelOp, FilterLayout, LinkContext, Space } from './types.js';

interface ConvData {
  input: Space | undefined;
  output: Space;
  depthwise: boolean;
  /** Other grouped convs: output channels per group (whole groups are kept or removed). */
  outPerGroup?: number;
}

/**
 * Conv. Group 1: the output is a new channel space, the weight slices on both axes. Depthwise (group = C_in =
 * C_out): input channel j is output channel j and `group` becomes the kept count. Other grouped convs
 * (ResNeXt, RegNet) are pruned by whole groups: each group's input and output channels are one class, so a
 * plan keeps or removes a group entirely; the weight slices on its output axis only (every kept group keeps
 * all its C/group inputs) and `group` becomes the kept group count.
 */
export const conv: ChannelOp<ConvData> = {
  opTypes: ['Conv'],

  link(node, ins, ctx) {
    const tracked = ins[0];
    const w = constantOf(node.inputs[1]);
    const od = ctx.dims(node.outputs[0]);
    if (!w || !od || ins[1] || ins[2] || (node.inputs[2] && !ctx.isConst(node.inputs[2]))) {
      ctx.unknown(node, `${node} has weights that are not constant`);
      return;
    }
    const groups = node.attrInt('group', 1);
    const [m, cPerGroup] = [w.dims[0]!, w.dims[1]!];
    const c = cPerGroup * groups;
    const kernel = prod(w.dims.slice(2));
    const o = ctx.newSpace(node.outputs[0]!, 1)!;
    // A tracked axis other than 1 (a transposed anchor or token axis) is not this conv's input channels.
    if (tracked && tracked.axis !== 1) ctx.freeze(tracked, `${node} reads channels off axis 1`);
    const x = tracked && tracked.axis === 1 ? tracked : undefined;
    const depthwise = groups > 1 && groups === c && m === c;
    let outPerGroup: number | undefined;
    if (x && depthwise) ctx.same(x, o, node);
    else if (groups > 1) {
      if (!x || x.size !== c || m % groups !== 0) {
        ctx.freeze(x, `${node} is a grouped convolution (${groups} groups) over untracked channels`);
        ctx.freeze(o, `${node} is a grouped convolution (${groups} groups) over untracked channels`);
      } else {
        outPerGroup = m / groups;
        linkWholeGroups(ctx, x, o, groups, cPerGroup, outPerGroup);
      }
    }
    ctx.record<ConvData>(node, { input: x, output: o, depthwise, ...(outPerGroup ? { outPerGroup } : {}) });
    ctx.producer(node, o, convLayout(node));
    linkCost(node, ctx, x, o, { spatial: prod(od.slice(2)), kernel, groups, cPerGroup });
  },

  slice(node, { input, output, depthwise, outPerGroup }, ctx) {
    const inAxis = depthwise || node.attrInt('group', 1) > 1 ? undefined : input;
    ctx.sliceInput(node, 1, [
      [0, output],
      [1, inAxis],
    ]);
    if (node.inputs[2]) ctx.sliceInput(node, 2, [[0, output]]);
    if (depthwise && ctx.changed(output)) node.attributes.set('group', intAttr(ctx.kept(output).length));
    if (outPerGroup && ctx.changed(output))
      node.attributes.set('group', intAttr(ctx.kept(output).length / outPerGroup));
  },

  linearUse(node, { input, output, depthwise }) {
    if (!input) return `${node} reads no tracked channels`;
    if (depthwise || node.attrInt('group', 1) > 1) return `${node} is a grouped convolution`;
    return { input, output, weight: 1, inAxis: 1, outAxis: 0 };
  },

  cost(node, shapeOf) {
    return convLikeCost(node, shapeOf, false);
  },
};

/** Group g's input channels [g·cIn, (g+1)·cIn) and output channels [g·mOut, (g+1)·mOut) become one class. */
function linkWholeGroups(
  ctx: LinkContext,
  x: Space | undefined,
  o: Space,
  groups: number,
  cIn: number,
  mOut: number,
): void {
  for (let g = 0; g < groups; g++) {
    const anchor = g * mOut;
    for (let k = 1; k < mOut; k++) ctx.link(o, anchor, o, anchor + k);
    if (x) for (let i = 0; i < cIn; i++) ctx.link(x, g * cIn + i, o, anchor);
  }
}

function linkCost(
  node: Node,
  ctx: LinkContext,
  x: Space | undefined,
  o: Space,
  {
    spatial,
    kernel,
    groups,
    cPerGroup,
  }: { spatial: number; kernel: number; groups: number; cPerGroup: number },
): void {
  const inSpaces = x && groups === 1 ? [x] : [];
  const inFactor = groups === 1 && x ? 1 : cPerGroup;
  ctx.cost(node, 'macs', spatial * kernel * inFactor, [o, ...inSpaces]);
  ctx.cost(node, 'params', kernel * inFactor, [o, ...inSpaces]);
  if (node.inputs[2]) ctx.cost(node, 'params', 1, [o]);
}

/** Each weight element is used once per output pixel (Conv) or once per input pixel (ConvTranspose). */
export function convLikeCost(
  node: Node,
  shapeOf: Parameters<NonNullable<ChannelOp['cost']>>[1],
  transpose: boolean,
) {
  const w = weightDims(node, node.inputs[1], shapeOf);
  const bias = constDims(node.inputs[2]);
  const group = node.attrInt('group', 1);
  const pixels = transpose
    ? prod(staticDims(node, node.inputs[0], 'input', shapeOf).slice(2))
    : prod(staticDims(node, node.outputs[0], 'output', shapeOf).slice(2));
  const weighted = constDims(node.inputs[1]) !== undefined;
  return layerCost(node, {
    outChannels: transpose ? w.dims[1]! * group : w.dims[0],
    macs: pixels * prod(w.dims),
    params: (weighted ? prod(w.dims) : 0) + (bias ? prod(bias.dims) : 0),
    buffers: 0,
    weight: w.name,
  });
}

/** Row p of the weight [M, C/g, k...] is output channel p's filter. */
function convLayout(node: Node): FilterLayout {
  const w = constantOf(node.inputs[1])!;
  const len = prod(w.dims.slice(1));
  return { weight: w, len, rowStep: len, stride: 1, ...(node.inputs[2] ? { bias: 2 } : {}) };
}
