import type { GroupAnalysis } from '../prune/groups.js';

/**
 * The share of the model's MACs (inspect's count) in layers whose output channels lie in a frozen group (they
 * cannot be narrowed), plus every MAC-counting node the channel analysis does not handle.
 */
export function frozenMacShare(analysis: GroupAnalysis, totalMacs: number): number {
  const macsOf = new Map<unknown, number>();
  for (const term of analysis.costs)
    if (term.kind === 'macs')
      macsOf.set(
        term.node,
        (macsOf.get(term.node) ?? 0) + term.spaces.reduce((v, s) => v * s.size, term.coef),
      );
  let prunable = 0;
  for (const grp of analysis.groups)
    if (!grp.frozen.length) for (const { node } of grp.producers) prunable += macsOf.get(node) ?? 0;
  return totalMacs > 0 ? Math.max(0, 1 - prunable / totalMacs) : 0;
}
