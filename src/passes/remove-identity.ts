import type { Graph, Node, Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Pass, PassResult } from './pass-manager.js';
import { dropDanglingValueInfo } from './dead-code.js';

/** Whether an If/Loop/Scan body returns `v` directly: that reference is in no use list, so it must not move. */
function returnedBySubgraph(g: Graph, v: Value): boolean {
  for (const n of g.allNodes()) for (const sub of n.subgraphs()) if (sub.outputs.includes(v)) return true;
  return false;
}

/**
 * Removes `node`, whose output `y` is just its input `x`, pointing y's consumers at x. When y is a graph
 * output, the output name must survive, so x's producer is renamed to y's name instead; that is impossible
 * when x is a graph input, an initializer or itself a graph output, and the node is then kept.
 * Returns whether the node was removed.
 */
export function bypassNode(g: Graph, node: Node, x: Value, y: Value): boolean {
  if (returnedBySubgraph(g, y)) return false;
  const isOutput = g.outputs.includes(y);
  if (!isOutput) {
    g.replaceAllUsesWith(y, x);
    g.removeNode(node);
    return true;
  }
  if (!x.producer || x.producer.graph !== g || g.outputs.includes(x)) return false;
  g.replaceAllUsesWith(y, x);
  g.removeNode(node);
  x.name = y.name;
  x.type = y.type ?? x.type;
  x.infoExtra = y.infoExtra ?? x.infoExtra;
  return true;
}

export const removeIdentity: Pass<void, PassResult & { removed: number }> = {
  name: 'remove-identity',
  description: 'Removes Identity nodes of the main graph, keeping graph output names.',
  reads: ['Identity nodes', 'graph outputs'],
  changes: [
    'graph.nodes',
    'node inputs',
    'names of values renamed to a graph output',
    'graph.valueInfo (dangling entries)',
  ],
  run(model: Model) {
    const g = model.graph;
    let removed = 0;
    for (const node of g.iterNodes()) {
      if (node.opType !== 'Identity' || (node.domain !== '' && node.domain !== 'ai.onnx')) continue;
      const x = node.inputs[0];
      if (x && bypassNode(g, node, x, node.output(0))) removed++;
    }
    if (removed) dropDanglingValueInfo(g);
    return { modified: removed > 0, removed };
  },
};
