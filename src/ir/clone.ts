import { AttributeType, type Attribute } from './attribute.js';
import { Graph, Node, Value } from './graph.js';
import { Model } from './model.js';
import type { ValueType } from './types.js';

/** A cloned model and where each original node and value went, for rewrites planned on the original. */
export interface CloneResult {
  model: Model;
  nodes: Map<Node, Node>;
  values: Map<Value, Value>;
}

/**
 * Copies the model's structure: new Graph, Node and Value objects (subgraphs included), tensors shared with
 * the original through Tensor.share (no weight bytes are copied). Changing the copy never changes the original.
 */
export function cloneModel(model: Model): CloneResult {
  const nodes = new Map<Node, Node>();
  const values = new Map<Value, Value>();
  const graph = cloneGraph(model.graph, undefined, nodes, values);
  const copy = new Model(graph);
  copy.irVersion = model.irVersion;
  copy.opsetImports = model.opsetImports.map((o) => ({ ...o }));
  copy.producerName = model.producerName;
  copy.producerVersion = model.producerVersion;
  copy.domain = model.domain;
  copy.modelVersion = model.modelVersion;
  copy.docString = model.docString;
  copy.metadata = model.metadata.map((m) => ({ ...m }));
  copy.extra = { ...model.extra };
  copy.sourcePath = model.sourcePath;
  copy.loadedFrom = model.loadedFrom;
  return { model: copy, nodes, values };
}

function cloneType(t: ValueType | undefined): ValueType | undefined {
  if (!t || t.kind !== 'tensor') return t;
  return { kind: 'tensor', elemType: t.elemType, shape: t.shape ? [...t.shape] : undefined };
}

function cloneGraph(
  source: Graph,
  parent: Graph | undefined,
  nodes: Map<Node, Node>,
  values: Map<Value, Value>,
): Graph {
  const g = new Graph();
  g.name = source.name;
  g.parent = parent;
  g.extra = { ...source.extra };
  // One map across scopes: a subgraph's reference to an outer value resolves to the outer copy.
  const mapped = (v: Value): Value => {
    let c = values.get(v);
    if (!c) {
      c = new Value(v.name, cloneType(v.type));
      if (v.infoExtra) c.infoExtra = { ...v.infoExtra };
      values.set(v, c);
    }
    return c;
  };
  for (const v of source.initializers) g.addInitializer(mapped(v), v.initializer!.share());
  for (const v of source.inputs) g.inputs.push(mapped(v));
  for (const v of source.sparseInitializers) g.sparseInitializers.push(mapped(v));
  for (const n of source.nodes) {
    const copy = new Node(
      n.opType,
      n.inputs.map((v) => (v ? mapped(v) : undefined)),
      n.outputs.map(mapped),
      n.name,
      n.domain,
    );
    copy.overload = n.overload;
    if (n.extra) copy.extra = { ...n.extra };
    for (const [key, a] of n.attributes) copy.attributes.set(key, cloneAttribute(a, g, nodes, values));
    g.addNode(copy);
    nodes.set(n, copy);
  }
  for (const v of source.valueInfo) g.valueInfo.push(mapped(v));
  for (const v of source.outputs) g.outputs.push(mapped(v));
  return g;
}

function cloneAttribute(
  a: Attribute,
  owner: Graph,
  nodes: Map<Node, Node>,
  values: Map<Value, Value>,
): Attribute {
  const extra = a.extra ? { extra: { ...a.extra } } : {};
  switch (a.type) {
    case AttributeType.GRAPH:
      return { type: a.type, value: cloneGraph(a.value, owner, nodes, values), ...extra };
    case AttributeType.GRAPHS:
      return { type: a.type, value: a.value.map((s) => cloneGraph(s, owner, nodes, values)), ...extra };
    case AttributeType.TENSOR:
      return { type: a.type, value: a.value.share(), ...extra };
    case AttributeType.TENSORS:
      return { type: a.type, value: a.value.map((t) => t.share()), ...extra };
    case AttributeType.INTS:
    case AttributeType.FLOATS:
    case AttributeType.STRINGS:
      return { ...a, value: [...a.value] } as Attribute;
    default:
      return { ...a };
  }
}
