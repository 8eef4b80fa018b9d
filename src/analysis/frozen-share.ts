import type { GroupAnalysis } from '../prune/groups.js';

/**
 * The share of the model's MACs (inspect's count) that no plan can reduce: the MAC terms whose channel spaces
 * all lie in frozen groups (a grouped conv between frozen groups, a classifier over frozen features), plus
 * every MAC-counting node the channel analysis does not handle. A layer with a frozen output but a prunable
 * input (the classifier after the last features) is not frozen: its MACs shrink with its input.
 */
export function frozenMacShare(analysis: GroupAnalysis, totalMacs: number): number {
  let prunable = 0;
  for (const term of analysis.costs) {
    if (term.kind !== 'macs' || term.spaces.every((s) => analysis.groups[s.group]!.frozen.length > 0))
      continue;
    prunable += term.spaces.reduce((v, s) => v * s.size, term.coef);
  }
  return totalMacs > 0 ? Math.max(0, 1 - prunable / totalMacs) : 0;
}
