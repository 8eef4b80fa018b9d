import type { Graph, Node, Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Pass, PassResult } from './pass-manager.js';
import { outerReferences } from './topo-sort.js';

/** Releases every input of a node and of the nodes inside its subgraphs (their outer-scope uses too). */
function releaseUses(node: Node): void {
  node.dropInputs();
  const visit = (g: Graph): void => g.nodes.forEach(releaseUses);
  node.subgraphs().forEach(visit);
}

/** Nodes of the main graph from which no graph output can be reached (outer-scope uses count). */
export function deadNodes(g: Graph): Node[] {
  const live = new Set<Node>();
  const work: Value[] = [...g.outputs];
  const seen = new Set<Value>();
  while (work.length) {
    const v = work.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    const p = v.producer;
    if (!p || p.graph !== g || live.has(p)) continue;
    live.add(p);
    for (const i of p.inputs) if (i) work.push(i);
    work.push(...outerReferences(p));
  }
  return g.nodes.filter((n) => !live.has(n));
}

export const removeDeadNodes: Pass<void, PassResult & { removed: number }> = {
  name: 'dead-code',
  description: 'Removes nodes whose results reach no graph output (values used inside subgraphs count).',
  reads: ['graph outputs', 'node inputs', 'subgraph outer references'],
  changes: ['graph.nodes', 'graph.valueInfo (dangling entries)'],
  run(model: Model) {
    const g = model.graph;
    const dead = deadNodes(g);
    dead.forEach(releaseUses);
    for (const n of dead) g.removeNode(n, false);
    dropDanglingValueInfo(g);
    return { modified: dead.length > 0, removed: dead.length };
  },
};

/**
 * Drops value_info entries for values the graph no longer defines (removed nodes, folded or renamed values),
 * and duplicates, so a viewer such as Netron sees nothing dangling. Returns how many were dropped.
 */
export function dropDanglingValueInfo(g: Graph): number {
  const defined = new Set(g.definedValues());
  const seen = new Set<unknown>();
  const names = new Set<string>();
  const keep = g.valueInfo.filter((v) => {
    const ok = defined.has(v) && !seen.has(v) && !names.has(v.name);
    seen.add(v);
    names.add(v.name);
    return ok;
  });
  const dropped = g.valueInfo.length - keep.length;
  if (dropped) g.valueInfo.splice(0, g.valueInfo.length, ...keep);
  return dropped;
}
