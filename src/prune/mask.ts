import { constantOf } from '../ir/index.js';
import type { PerChannel } from '../ops/types.js';
import type { FilterLayout, GroupAnalysis, Space } from './groups.js';

/**
 * Makes every channel a plan removes exactly zero in the analysed model: zero the producing filters (and their
 * biases) and the BN gamma and beta of every member, so BN outputs 0 (beta + gamma * x̂ with both zero). The
 * masked model then computes what the pruned one does: the mask-equivalence check of the rewrite.
 */
export function maskRemovedChannels(analysis: GroupAnalysis, keep: readonly Uint8Array[]): void {
  const removed = (s: Space, p: number): boolean => !keep[s.group]![s.classOf[p]!];
  for (const grp of analysis.groups)
    for (const { node, space, layout } of grp.producers) {
      zeroFilters(layout, (p) => removed(space, p), space.size);
      const b = layout.bias !== undefined ? constantOf(node.inputs[layout.bias]) : undefined;
      if (b && b.size === space.size) zeroEntries(b, (p) => removed(space, p));
    }
  for (const r of analysis.records) {
    const data = r.data as Partial<PerChannel>;
    if (data.kind !== 'perChannel' || (data.role !== 'scale' && data.role !== 'bias')) continue;
    const t = constantOf(r.node.inputs[data.index!])!;
    zeroEntries(t, (p) => removed(data.space!, p));
  }
}

function zeroFilters(layout: FilterLayout, isRemoved: (p: number) => boolean, channels: number): void {
  const d = layout.weight.data.slice() as Float32Array;
  const { len, rowStep, stride, blocks } = layout;
  for (let p = 0; p < channels; p++) {
    if (!isRemoved(p)) continue;
    if (blocks)
      for (let c = 0; c < blocks.count; c++)
        d.fill(0, c * blocks.step + p * blocks.size, c * blocks.step + (p + 1) * blocks.size);
    else for (let i = 0, at = p * rowStep; i < len; i++, at += stride) d[at] = 0;
  }
  layout.weight.setData(d);
}

function zeroEntries(t: ReturnType<typeof constantOf> & object, isRemoved: (p: number) => boolean): void {
  const d = t.data.slice() as Float32Array;
  for (let p = 0; p < d.length; p++) if (isRemoved(p)) d[p] = 0;
  t.setData(d);
}
