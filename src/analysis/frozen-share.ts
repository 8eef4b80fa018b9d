import type { Node } from '../ir/graph.js';
import type { CostTerm, GroupAnalysis } from '../prune/groups.js';

/** The MACs (or params) no plan can reduce, and why. */
export interface FrozenBreakdown {
  /** Share of the total in terms whose channel spaces all lie in frozen groups, or in no group at all. */
  share: number;
  /**
   * Share of the total in layers whose output channels (filters) cannot shrink: a layer whose output group is
   * frozen still shrinks with a prunable input, so this is the larger figure on a network cut at its outputs.
   */
  byFilters: number;
  /** The frozen amount by reason (node names dropped, so repeats add up), largest first. */
  reasons: { reason: string; nodes: number; amount: number }[];
}

/**
 * Where the model's MACs (or params) cannot shrink. `total` is inspect's count; the analysis's cost terms
 * add up to it (analyzeGroups completes them), so the shares are of the whole model.
 */
export function frozenBreakdown(
  analysis: GroupAnalysis,
  total: number,
  kind: 'macs' | 'params' = 'macs',
): FrozenBreakdown {
  const frozenGroup = (id: number): boolean => analysis.groups[id]!.frozen.length > 0;
  const outputFrozen = filterFrozenNodes(analysis, frozenGroup);
  const byReason = new Map<string, { nodes: Set<Node>; amount: number }>();
  let frozen = 0;
  let byFilters = 0;
  for (const term of analysis.costs) {
    if (term.kind !== kind) continue;
    const amount = term.spaces.reduce((v, s) => v * s.size, term.coef);
    if (outputFrozen.has(term.node)) byFilters += amount;
    if (!term.spaces.every((s) => frozenGroup(s.group))) continue;
    frozen += amount;
    const reason = frozenReason(analysis, term);
    const entry = byReason.get(reason) ?? { nodes: new Set<Node>(), amount: 0 };
    entry.nodes.add(term.node);
    entry.amount += amount;
    byReason.set(reason, entry);
  }
  const share = (x: number): number => (total > 0 ? Math.min(1, Math.max(0, x / total)) : 0);
  return {
    share: share(frozen),
    byFilters: share(byFilters),
    reasons: [...byReason]
      .map(([reason, e]) => ({ reason, nodes: e.nodes.size, amount: e.amount }))
      .sort((a, b) => b.amount - a.amount || a.reason.localeCompare(b.reason)),
  };
}

/** The share of MACs no plan can reduce (inspect --groups, the families' bound). */
export function frozenMacShare(analysis: GroupAnalysis, totalMacs: number): number {
  return frozenBreakdown(analysis, totalMacs).share;
}

/**
 * Nodes with a cost whose output channels no plan can remove: a frozen output group, or none tracked. A node
 * with no filters whose output still narrows (attention's MatMuls of two activations, over heads) is not one.
 */
function filterFrozenNodes(analysis: GroupAnalysis, frozenGroup: (id: number) => boolean): Set<Node> {
  const prunable = new Set<Node>();
  for (const g of analysis.groups) if (!frozenGroup(g.id)) for (const p of g.producers) prunable.add(p.node);
  for (const t of analysis.costs) {
    const out = t.node.outputs[0] && analysis.spaceOf.get(t.node.outputs[0]);
    if (out && !frozenGroup(out.group)) prunable.add(t.node);
  }
  return new Set(analysis.costs.map((t) => t.node).filter((n) => !prunable.has(n)));
}

/** A frozen term's reason, with node and value names dropped so that 73 attention MatMuls read as one. */
function frozenReason(analysis: GroupAnalysis, term: CostTerm): string {
  const raw =
    analysis.unknownWhy.get(term.node) ??
    (term.spaces.length
      ? analysis.groups[term.spaces[0]!.group]!.frozen[0]!
      : `${term.node.opType} reads no channels the analysis tracks`);
  return raw
    .replace(/'[^']*'/g, '')
    .replace(/\s+([:,)])/g, '$1')
    .replace(/\s+/g, ' ')
    .trim();
}
