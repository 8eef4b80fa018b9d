import type { Graph, Node, Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Pass, PassResult } from './pass-manager.js';

/** Values a node's subgraphs read from enclosing scopes (they order the node after their producers). */
export function outerReferences(node: Node): Value[] {
  const refs: Value[] = [];
  const visit = (g: Graph): void => {
    const local = new Set(g.definedValues());
    for (const n of g.nodes) {
      for (const v of n.inputs) if (v && !local.has(v)) refs.push(v);
      n.subgraphs().forEach(visit);
    }
    // A body may return an outer value directly, without any node reading it.
    for (const v of g.outputs) if (!local.has(v)) refs.push(v);
  };
  node.subgraphs().forEach(visit);
  return refs;
}

/**
 * The graph's nodes in a dependency order that keeps the current order wherever it is already valid: each
 * node is emitted after its producers, visited depth first in the existing order, so a sorted graph comes
 * back unchanged. Cycles (invalid ONNX) throw.
 */
export function topologicalOrder(graph: Graph): Node[] {
  const order: Node[] = [];
  const state = new Map<Node, 'visiting' | 'done'>();
  const mine = new Set(graph.nodes);
  const visit = (root: Node): void => {
    // Iterative DFS: deep networks would overflow a recursive one.
    const stack: { node: Node; deps: Node[]; k: number }[] = [];
    const push = (n: Node): void => {
      state.set(n, 'visiting');
      const deps = [...n.inputs, ...outerReferences(n)].flatMap((v) =>
        v?.producer && mine.has(v.producer) ? [v.producer] : [],
      );
      stack.push({ node: n, deps, k: 0 });
    };
    push(root);
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      if (top.k < top.deps.length) {
        const dep = top.deps[top.k++]!;
        const s = state.get(dep);
        if (s === 'visiting') throw new Error(`graph '${graph.name}' has a cycle through node '${dep.name}'`);
        if (!s) push(dep);
      } else {
        stack.pop();
        state.set(top.node, 'done');
        order.push(top.node);
      }
    }
  };
  for (const n of graph.nodes) if (!state.has(n)) visit(n);
  return order;
}

export const topoSort: Pass<void, PassResult & { moved: number }> = {
  name: 'topo-sort',
  description: 'Orders nodes so every value is produced before it is used, keeping an already valid order.',
  reads: ['graph.nodes', 'node inputs', 'subgraph outer references'],
  changes: ['graph.nodes (order only)'],
  run(model: Model) {
    const g = model.graph;
    const order = topologicalOrder(g);
    const moved = order.filter((n, i) => g.nodes[i] !== n).length;
    if (moved) g.nodes.splice(0, g.nodes.length, ...order);
    return { modified: moved > 0, moved };
  },
};
