import * as graphlib from '@dagrejs/graphlib';
import type { Graph, Node, Value } from './graph.js';
import type { Model } from './model.js';

/**
 * Checks the IR's invariants: use lists match node inputs, every value is defined once and before it is used
 * (topological order, outer scopes included), names are unique, initializers agree with their declared type.
 * Returns the problems found (empty when sound). Run after every pass in debug mode.
 */
export function verifyModel(model: Model): string[] {
  const problems: string[] = [];
  verifyGraph(model.graph, new Set(), problems);
  return problems;
}

export function assertValid(model: Model, after: string): void {
  const problems = verifyModel(model);
  if (problems.length)
    throw new Error(
      `IR invalid after ${after}: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` (+${problems.length - 5} more)` : ''}`,
    );
}

function verifyGraph(g: Graph, outerVisible: Set<Value>, problems: string[]): void {
  const visible = new Set(outerVisible);
  const names = new Map<string, Value>();
  const declare = (v: Value, what: string): void => {
    const prior = names.get(v.name);
    if (prior && prior !== v) problems.push(`${what} '${v.name}' is defined twice`);
    names.set(v.name, v);
    visible.add(v);
  };
  g.inputs.forEach((v) => declare(v, 'input'));
  for (const v of g.initializers) {
    declare(v, 'initializer');
    const t = v.initializer;
    if (!t) problems.push(`initializer '${v.name}' has no tensor`);
    else if (
      v.shape &&
      (v.shape.length !== t.dims.length || v.shape.some((d, i) => typeof d === 'number' && d !== t.dims[i]))
    )
      problems.push(`initializer '${v.name}' has dims [${t.dims}] but its value says [${v.shape}]`);
  }
  g.sparseInitializers.forEach((v) => declare(v, 'sparse initializer'));
  const nodeNames = new Set<string>();
  for (const n of g.nodes) {
    if (n.graph !== g) problems.push(`node '${n.name}' does not point back to its graph`);
    if (n.name && nodeNames.has(n.name)) problems.push(`node name '${n.name}' is used twice`);
    nodeNames.add(n.name);
    n.inputs.forEach((v, i) => {
      if (!v) return;
      if (!visible.has(v))
        problems.push(`node '${n.name}' input ${i} '${v.name}' is used before it is defined (or never)`);
      if (!v.uses.some((u) => u.node === n && u.index === i))
        problems.push(`value '${v.name}' lacks the use by '${n.name}' input ${i}`);
    });
    for (const sub of n.subgraphs()) verifyGraph(sub, visible, problems);
    n.outputs.forEach((v, i) => {
      if (v.producer !== n || v.producerIndex !== i)
        problems.push(`value '${v.name}' does not point back to its producer '${n.name}'`);
      if (v.name !== '') declare(v, 'value');
    });
  }
  if (problems.some((p) => p.includes('used before it is defined'))) reportCycles(g, problems);
  for (const v of names.values()) checkUses(v, problems);
  for (const v of g.outputs) if (!visible.has(v)) problems.push(`graph output '${v.name}' is not defined`);
}

/** Out-of-order uses are either a sorting problem or a true cycle; name the cycle so the two can be told apart. */
function reportCycles(g: Graph, problems: string[]): void {
  const deps = new graphlib.Graph();
  const label = (n: Node, i: number): string => n.name || `#${i} ${n.opType}`;
  g.nodes.forEach((n, i) => deps.setNode(String(i), label(n, i)));
  const index = new Map(g.nodes.map((n, i) => [n, String(i)]));
  g.nodes.forEach((n, i) => {
    for (const v of n.inputs) {
      const from = v?.producer && index.get(v.producer);
      if (from !== undefined) deps.setEdge(from, String(i));
    }
  });
  for (const cycle of graphlib.alg.findCycles(deps))
    problems.push(`cycle through nodes ${cycle.map((id) => `'${deps.node(id)}'`).join(', ')}`);
}

function checkUses(v: Value, problems: string[]): void {
  for (const u of v.uses) {
    if (u.node.inputs[u.index] !== v)
      problems.push(`value '${v.name}' lists a stale use by '${u.node.name}' input ${u.index}`);
    if (!u.node.graph)
      problems.push(`value '${v.name}' is used by '${u.node.name}', which is not in any graph`);
  }
}

export type { Node };
