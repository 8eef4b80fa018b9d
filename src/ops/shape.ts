import type { Node, Value } from '../ir/index.js';
import type { ChannelOp, LinkContext, Space } from './types.js';

/**
 * Shape of channel data: harmless when no dim it passes on is the channel count (DenseNet's `x.view(N, -1)`
 * Gathers the batch; torch's `F.interpolate(x, size=y.shape[-2:])` Slices H and W), or when the count only
 * comes back as the channel entry of `sizes` of a Resize of the same tensor (torch's interpolate builds
 * `sizes` from `x.shape[:2]`): computed at run time, it follows the pruned tensor. Any other reader of the
 * channel count freezes it, since pruning would change it.
 */
export const shape: ChannelOp = {
  opTypes: ['Shape'],

  link(node, ins, ctx) {
    const x = ins[0];
    if (!x) return;
    const rank = ctx.dims(node.inputs[0])?.length ?? 0;
    const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + rank : v, 0), rank);
    const start = clamp(node.attrInt('start', 0));
    const end = clamp(node.attrInt('end', rank));
    if (x.axis < start || x.axis >= end) return;
    if (!countStaysWith(node.outputs[0]!, x.axis - start, x, ctx, 0))
      ctx.freeze(x, `${node} reads the channel count`);
  },
};

/**
 * Whether the channel count, at element `at` of the 1-D shape vector `v` (undefined: not in it), reaches
 * nothing but the sizes of a Resize of the space's own tensor, through Slice, Gather, Concat, Cast.
 */
function countStaysWith(
  v: Value,
  at: number | undefined,
  x: Space,
  ctx: LinkContext,
  depth: number,
): boolean {
  if (at === undefined) return true;
  if (depth > 8) return false;
  const length = ctx.dims(v)?.[0];
  return v.uses.every(({ node, index }) => {
    if (node.opType === 'Resize' && index === 3) return node.inputs[0] === x.value && at === x.axis;
    // A tensor shaped like x, made at run time: it follows the pruned x (constant-of-shape.ts links it).
    if (node.opType === 'ConstantOfShape') return depth === 0 && isWholeShape(v, x, ctx);
    if (index !== 0 && node.opType !== 'Concat') return false;
    const next = (to: number | undefined): boolean => countStaysWith(node.outputs[0]!, to, x, ctx, depth + 1);
    switch (node.opType) {
      case 'Cast':
      case 'Identity':
        return next(at);
      case 'Gather': {
        const picked = ctx.ints(node.inputs[1]);
        if (!picked || length === undefined || (ctx.dims(node.inputs[1])?.length ?? 1) > 1) return false;
        const k = picked.findIndex((i) => (i < 0 ? i + length : i) === at);
        return picked.length === 1 && ctx.dims(node.inputs[1])?.length === 0
          ? k < 0 // a scalar pick of another dim drops the count
          : next(k < 0 ? undefined : k);
      }
      case 'Slice': {
        const kept = sliceIndices(node, length, ctx);
        return kept !== undefined && next(kept.includes(at) ? kept.indexOf(at) : undefined);
      }
      case 'Concat': {
        let offset = 0;
        for (const input of node.inputs.slice(0, index)) {
          const n = ctx.dims(input)?.[0];
          if (n === undefined) return false;
          offset += n;
        }
        return next(offset + at);
      }
      default:
        return false;
    }
  });
}

/** The elements of a 1-D vector of `length` a constant Slice keeps, in order; undefined when not known. */
function sliceIndices(node: Node, length: number | undefined, ctx: LinkContext): number[] | undefined {
  if (ctx.opset < 10 || length === undefined) return undefined;
  const [starts, ends, axes, steps] = [1, 2, 3, 4].map((i) =>
    node.inputs[i] ? ctx.ints(node.inputs[i]) : [],
  );
  if (!starts?.length || !ends?.length || (axes?.length && axes[0] !== 0 && axes[0] !== -1)) return undefined;
  const step = steps?.[0] ?? 1;
  const at = (v: number, lo: number, hi: number): number =>
    Math.min(Math.max(v < 0 ? v + length : v, lo), hi);
  const out: number[] = [];
  if (step > 0) for (let k = at(starts[0]!, 0, length); k < at(ends[0]!, 0, length); k += step) out.push(k);
  else if (step < 0)
    for (let k = at(starts[0]!, -1, length - 1); k > at(ends[0]!, -1, length - 1); k += step) out.push(k);
  else return undefined;
  return out;
}

/** Whether v is the whole shape of the space's own tensor (Shape without start or end). */
function isWholeShape(v: Value, x: Space, ctx: LinkContext): boolean {
  const shape = v.producer;
  return (
    shape?.opType === 'Shape' &&
    shape.inputs[0] === x.value &&
    !shape.attributes.has('start') &&
    !shape.attributes.has('end') &&
    ctx.dims(v)?.[0] === ctx.dims(x.value)?.length
  );
}
