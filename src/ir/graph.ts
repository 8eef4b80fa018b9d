import { AttributeType, type Attribute, type Int } from './attribute.js';
import type { Tensor } from './tensor.js';
import { staticSize, type Dim, type ValueType } from './types.js';

/** One place a value is consumed: input slot `index` of `node`. */
export interface Use {
  node: Node;
  index: number;
}

/**
 * An edge of the dataflow graph: produced by one node output, a graph input, or an initializer, and consumed by
 * node inputs (`uses`, kept up to date by Node's setters) and possibly by the graph outputs.
 */
export class Value {
  name: string;
  type: ValueType | undefined;
  /** The constant this value holds when it is an initializer. */
  initializer: Tensor | undefined;
  producer: Node | undefined;
  producerIndex = -1;
  readonly uses: Use[] = [];
  /** Fields of its ValueInfoProto the IR does not model (doc_string, metadata_props). */
  infoExtra: Record<string, unknown> | undefined;

  constructor(name: string, type?: ValueType) {
    this.name = name;
    this.type = type;
  }

  get shape(): Dim[] | undefined {
    return this.type?.kind === 'tensor' ? this.type.shape : undefined;
  }

  get elemType(): number | undefined {
    return this.type?.kind === 'tensor' ? this.type.elemType : undefined;
  }

  get rank(): number | undefined {
    return this.shape?.length;
  }

  /** Static element count, when every dim is known. */
  get size(): number | undefined {
    return staticSize(this.shape);
  }

  get isInitializer(): boolean {
    return this.initializer !== undefined;
  }

  /** Consumers, without duplicates, in first-use order. */
  consumers(): Node[] {
    return [...new Set(this.uses.map((u) => u.node))];
  }

  toString(): string {
    return this.name;
  }
}

/** An operator application. Inputs may be absent (`undefined`: ONNX's empty-name optional input). */
export class Node {
  opType: string;
  domain: string;
  name: string;
  overload: string | undefined;
  readonly attributes = new Map<string, Attribute>();
  /** Fields of its NodeProto the IR does not model (doc_string, metadata_props, device configurations). */
  extra: Record<string, unknown> | undefined;
  graph: Graph | undefined;
  private readonly _inputs: (Value | undefined)[] = [];
  private readonly _outputs: Value[] = [];

  constructor(
    opType: string,
    inputs: readonly (Value | undefined)[],
    outputs: readonly Value[],
    name = '',
    domain = '',
  ) {
    this.opType = opType;
    this.name = name;
    this.domain = domain;
    this.overload = undefined;
    inputs.forEach((v) => this.appendInput(v));
    outputs.forEach((v) => this.appendOutput(v));
  }

  get inputs(): readonly (Value | undefined)[] {
    return this._inputs;
  }

  get outputs(): readonly Value[] {
    return this._outputs;
  }

  input(i: number): Value {
    const v = this._inputs[i];
    if (!v) throw new Error(`node '${this.name}' (${this.opType}) has no input ${i}`);
    return v;
  }

  output(i = 0): Value {
    const v = this._outputs[i];
    if (!v) throw new Error(`node '${this.name}' (${this.opType}) has no output ${i}`);
    return v;
  }

  setInput(i: number, v: Value | undefined): void {
    const old = this._inputs[i];
    if (old === v) return;
    if (old) removeUse(old, this, i);
    this._inputs[i] = v;
    if (v) v.uses.push({ node: this, index: i });
  }

  appendInput(v: Value | undefined): void {
    this._inputs.push(undefined);
    this.setInput(this._inputs.length - 1, v);
  }

  /** Drops trailing inputs from index `count` on. */
  truncateInputs(count: number): void {
    for (let i = this._inputs.length - 1; i >= count; i--) this.setInput(i, undefined);
    this._inputs.length = Math.min(this._inputs.length, count);
  }

  appendOutput(v: Value): void {
    if (v.producer) throw new Error(`value '${v.name}' already has a producer '${v.producer.name}'`);
    v.producer = this;
    v.producerIndex = this._outputs.length;
    this._outputs.push(v);
  }

  /** Detaches this node from its inputs (its outputs keep pointing here until replaced). */
  dropInputs(): void {
    for (let i = 0; i < this._inputs.length; i++) this.setInput(i, undefined);
    this._inputs.length = 0;
  }

  attr(name: string): Attribute | undefined {
    return this.attributes.get(name);
  }

  attrInt(name: string, fallback: number): number;
  attrInt(name: string): number | undefined;
  attrInt(name: string, fallback?: number): number | undefined {
    const a = this.attributes.get(name);
    if (!a) return fallback;
    if (a.type !== AttributeType.INT)
      throw new Error(`attribute '${name}' of node '${this.name}' is not an int`);
    return intToNumber(a.value);
  }

  attrInts(name: string, fallback: number[]): number[];
  attrInts(name: string): number[] | undefined;
  attrInts(name: string, fallback?: number[]): number[] | undefined {
    const a = this.attributes.get(name);
    if (!a) return fallback;
    if (a.type !== AttributeType.INTS)
      throw new Error(`attribute '${name}' of node '${this.name}' is not a list of ints`);
    return a.value.map(intToNumber);
  }

  attrFloat(name: string, fallback: number): number;
  attrFloat(name: string): number | undefined;
  attrFloat(name: string, fallback?: number): number | undefined {
    const a = this.attributes.get(name);
    if (!a) return fallback;
    if (a.type !== AttributeType.FLOAT)
      throw new Error(`attribute '${name}' of node '${this.name}' is not a float`);
    return a.value;
  }

  attrFloats(name: string): number[] | undefined {
    const a = this.attributes.get(name);
    if (!a) return undefined;
    if (a.type !== AttributeType.FLOATS)
      throw new Error(`attribute '${name}' of node '${this.name}' is not a list of floats`);
    return [...a.value];
  }

  attrString(name: string, fallback: string): string;
  attrString(name: string): string | undefined;
  attrString(name: string, fallback?: string): string | undefined {
    const a = this.attributes.get(name);
    if (!a) return fallback;
    if (a.type !== AttributeType.STRING)
      throw new Error(`attribute '${name}' of node '${this.name}' is not a string`);
    return new TextDecoder().decode(a.value);
  }

  /** Subgraphs held by attributes (If/Loop/Scan bodies). */
  subgraphs(): Graph[] {
    const out: Graph[] = [];
    for (const a of this.attributes.values()) {
      if (a.type === AttributeType.GRAPH) out.push(a.value);
      else if (a.type === AttributeType.GRAPHS) out.push(...a.value);
    }
    return out;
  }

  toString(): string {
    return `${this.opType} '${this.name}'`;
  }
}

/** Clamps an int64 attribute to a JS number (INT64_MAX becomes MAX_SAFE_INTEGER-ish infinity stand-in). */
export function intToNumber(v: Int): number {
  if (typeof v === 'number') return v;
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) return Number.MAX_SAFE_INTEGER;
  if (v < BigInt(Number.MIN_SAFE_INTEGER)) return Number.MIN_SAFE_INTEGER;
  return Number(v);
}

function removeUse(v: Value, node: Node, index: number): void {
  const k = v.uses.findIndex((u) => u.node === node && u.index === index);
  if (k >= 0) v.uses.splice(k, 1);
}

/**
 * A (sub)graph: nodes in order, inputs, outputs, initializers. A subgraph's `parent` is the graph of the node
 * holding it; names it does not define resolve there (ONNX's outer-scope references), so a value of the outer
 * graph can have uses inside a subgraph, and dead-code removal sees them.
 */
export class Graph {
  name = '';
  readonly nodes: Node[] = [];
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  readonly initializers: Value[] = [];
  /**
   * Values defined by sparse_initializer. Their messages stay in `extra.sparse_initializer` and are written back
   * as they came; these Values only give nodes something to point at (no dense Tensor is made).
   */
  readonly sparseInitializers: Value[] = [];
  /** Values listed in value_info, in file order (shape inference appends). */
  readonly valueInfo: Value[] = [];
  parent: Graph | undefined;
  /** GraphProto fields the IR does not model: doc_string, sparse_initializer, quantization_annotation, metadata_props. */
  extra: Record<string, unknown> = {};

  addNode(node: Node, before?: Node): Node {
    if (node.graph) throw new Error(`node '${node.name}' already belongs to a graph`);
    node.graph = this;
    if (before) {
      const k = this.nodes.indexOf(before);
      if (k < 0) throw new Error(`node '${before.name}' is not in graph '${this.name}'`);
      this.nodes.splice(k, 0, node);
    } else this.nodes.push(node);
    for (const g of node.subgraphs()) g.parent = this;
    this.noteNames(node.name, ...node.outputs.map((v) => v.name));
    return node;
  }

  /** Removes a node; with `detach`, it also releases its inputs. Its outputs must be unused by then. */
  removeNode(node: Node, detach = true): void {
    const k = this.nodes.indexOf(node);
    if (k < 0) throw new Error(`node '${node.name}' is not in graph '${this.name}'`);
    for (const out of node.outputs) {
      if (out.uses.length > 0 || this.outputs.includes(out))
        throw new Error(`cannot remove node '${node.name}': its output '${out.name}' is still used`);
    }
    this.nodes.splice(k, 1);
    if (detach) node.dropInputs();
    node.graph = undefined;
  }

  /**
   * A copy of the node list to iterate while inserting or removing; nodes removed meanwhile are skipped.
   */
  *iterNodes(): Generator<Node> {
    for (const n of [...this.nodes]) if (n.graph === this) yield n;
  }

  addInitializer(value: Value, tensor: Tensor): Value {
    value.initializer = tensor;
    tensor.name = value.name;
    this.initializers.push(value);
    this.noteNames(value.name);
    return value;
  }

  removeInitializer(value: Value): void {
    const k = this.initializers.indexOf(value);
    if (k >= 0) this.initializers.splice(k, 1);
    value.initializer = undefined;
  }

  /** Points every use of `from` (node inputs, graph outputs, subgraph references) at `to`. */
  replaceAllUsesWith(from: Value, to: Value): void {
    if (from === to) return;
    for (const use of [...from.uses]) use.node.setInput(use.index, to);
    // Graph outputs hold no use entries: any graph of the tree may name `from` (a subgraph may return an outer value).
    const visit = (g: Graph): void => {
      g.outputs.forEach((o, i) => {
        if (o === from) g.outputs[i] = to;
      });
      for (const n of g.nodes) n.subgraphs().forEach(visit);
    };
    visit(this.root());
  }

  /** Every value defined in this graph (not in subgraphs): inputs, initializers, node outputs. */
  definedValues(): Value[] {
    const seen = new Set<Value>([...this.inputs, ...this.initializers, ...this.sparseInitializers]);
    for (const n of this.nodes) for (const o of n.outputs) seen.add(o);
    return [...seen];
  }

  valueByName(): Map<string, Value> {
    return new Map(this.definedValues().map((v) => [v.name, v]));
  }

  nodeByName(name: string): Node | undefined {
    return this.nodes.find((n) => n.name === name);
  }

  /** Nodes of this graph and of every nested subgraph, depth first. */
  *allNodes(): Generator<Node> {
    for (const n of this.nodes) {
      yield n;
      for (const g of n.subgraphs()) yield* g.allNodes();
    }
  }

  /**
   * A name not yet used by any value or node in this graph tree, starting from `base`. Names are cached on the
   * root after the first call; nodes and initializers added through addNode/addInitializer are noted, but a
   * value renamed or pushed onto `inputs` directly afterwards should take its name from here.
   */
  uniqueName(base: string): string {
    const root = this.root();
    let taken = root.nameSet;
    if (!taken) {
      taken = new Set<string>();
      const collect = (g: Graph): void => {
        for (const v of g.definedValues()) taken!.add(v.name);
        for (const n of g.nodes) {
          taken!.add(n.name);
          n.subgraphs().forEach(collect);
        }
      };
      collect(root);
      root.nameSet = taken;
    }
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  }

  private nameSet: Set<string> | undefined;

  /** Keeps uniqueName's cache (built on first use) aware of names that arrive through addNode/addInitializer. */
  private noteNames(...names: string[]): void {
    const taken = this.root().nameSet;
    if (taken) for (const n of names) if (n !== '') taken.add(n);
  }

  root(): Graph {
    let g: Graph = this;
    while (g.parent) g = g.parent;
    return g;
  }
}
