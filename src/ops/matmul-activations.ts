import type { Node } from '../ir/index.js';
import { prod } from './shared.js';
import type { LinkContext, Space } from './types.js';

/**
 * MatMul of two activations (attention's q·kᵀ and weights·v): a batch axis carrying channels (heads) in both
 * operands links them and passes to the output; A's row axis and B's column axis pass to the output alone; the
 * contracted axis must carry the same channels in both, or none. Removing a channel then removes matching
 * terms of every sum, which is what masking it would do. Anything else (broadcast batch dims, channels in one
 * operand only) freezes with a reason.
 */
export function linkActivationMatMul(
  node: Node,
  ins: readonly (Space | undefined)[],
  ctx: LinkContext,
): void {
  const [a, b] = ins;
  const ad = ctx.dims(node.inputs[0]);
  const bd = ctx.dims(node.inputs[1]);
  const od = ctx.dims(node.outputs[0]);
  const out = node.outputs[0]!;
  if (!ad || !bd || !od || ad.length < 2 || ad.length !== bd.length)
    return ctx.unknown(node, `${node}: only MatMul of two activations of the same rank is supported`);
  const r = ad.length;
  const role = (s: Space | undefined): 'batch' | 'rows' | 'inner' | 'cols' | undefined =>
    s === undefined
      ? undefined
      : s.axis < r - 2
        ? 'batch'
        : s === a
          ? s.axis === r - 2
            ? 'rows'
            : 'inner'
          : s.axis === r - 2
            ? 'inner'
            : 'cols';
  const [ra, rb] = [role(a), role(b)];
  const batchEqual = ad.slice(0, -2).every((v, i) => v === bd[i]);
  if (!batchEqual) return ctx.unknown(node, `${node} broadcasts a batch axis of two activations`);
  const spaces: Space[] = [];
  if (ra === 'batch' || rb === 'batch') {
    if (!a || !b || a.axis !== b.axis)
      return ctx.unknown(node, `${node}: a batch axis carries channels in one operand only`);
    ctx.same(a, b, node);
    ctx.passThrough(a, node, out);
    spaces.push(a);
  } else if (ra === 'inner' || rb === 'inner') {
    if (ra !== 'inner' || rb !== 'inner')
      return ctx.unknown(node, `${node}: the contracted axis carries channels in one operand only`);
    ctx.same(a!, b!, node);
    spaces.push(a!);
  } else {
    // One operand's rows or columns (the other operand untracked, or its own rows/columns: one space per value).
    if (a && b) return ctx.unknown(node, `${node}: channels on both the rows and the columns`);
    const s = (a ?? b)!;
    ctx.passThrough(s, node, out, s === a ? r - 2 : r - 1);
    spaces.push(s);
  }
  const k = ad[r - 1]!;
  ctx.cost(node, 'macs', (prod(od) * k) / prod(spaces.map((s) => s.size)), spaces);
}
