import type { Graph, Node, Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';

/**
 * PyTorch module paths for the names an export carries, so reports say `layer1.0.conv1` where the graph says
 * `/layer1/layer1.0/conv1/Conv_output_0`. The raw names stay in JSON output; these are for people.
 */

/** Ops whose parameter initializers torch names `<module path>.weight` when BN is kept (the state_dict key). */
const PARAMETRIC = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul', 'BatchNormalization', 'PRelu']);

/**
 * The module path in a torch >= 1.13 scoped name: `/layer1/layer1.0/conv1/Conv_output_0` -> `layer1.0.conv1`,
 * `/features/features.1/conv/conv.0/conv.0.0/Conv` -> `features.1.conv.0.0`. The exporter writes a container's
 * child as `<container>.<index>` and any other child by its attribute name; the last part names the op.
 * Undefined for names without a scope (`input`, `onnx::Conv_12`, `123`).
 */
export function modulePathOfScopedName(name: string): string | undefined {
  if (!name.startsWith('/')) return undefined;
  const parts = name.split('/').slice(1, -1);
  if (!parts.length || parts.some((p) => p === '')) return undefined;
  let path = '';
  let last = '';
  for (const part of parts) {
    path =
      path && part.startsWith(`${last}.`) ? path + part.slice(last.length) : path ? `${path}.${part}` : part;
    last = part;
  }
  return path;
}

/** `layer1.0.conv1.weight` -> `layer1.0.conv1`, for initializer names that look like state_dict keys. */
export function modulePathOfParameter(name: string): string | undefined {
  const m = /^([A-Za-z_][\w]*(?:\.[\w]+)*)\.(weight|bias|running_mean|running_var)$/.exec(name);
  return m?.[1];
}

function nodeModulePath(node: Node): string | undefined {
  if (PARAMETRIC.has(node.opType)) {
    const weight = node.inputs[1];
    const fromParameter = weight?.initializer ? modulePathOfParameter(weight.name) : undefined;
    if (fromParameter) return fromParameter;
  }
  return modulePathOfScopedName(node.name);
}

/**
 * Labels values and nodes of one model by module path: the producer's parameter name when it is a state_dict
 * key (BN-kept exports), else the exporter's scope, else the raw name.
 */
export class ModuleNames {
  private readonly byName: Map<string, Value>;

  constructor(graph: Graph) {
    this.byName = graph.valueByName();
  }

  static of(model: Model): ModuleNames {
    return new ModuleNames(model.graph);
  }

  /** The label of a value given by name (with an optional `@axis` suffix, as in plan anchors). */
  value(name: string): string {
    const [base, axis] = splitAxis(name);
    const v = this.byName.get(base);
    const producer = v?.producer;
    const path = (producer && nodeModulePath(producer)) ?? modulePathOfScopedName(base);
    return (path ?? base) + (axis ?? '');
  }

  node(node: Node): string {
    return nodeModulePath(node) ?? (node.name || node.opType);
  }
}

/** Labels a value name without the model (scope only): for reports made from names alone. */
export function labelOfValueName(name: string): string {
  const [base, axis] = splitAxis(name);
  return (modulePathOfScopedName(base) ?? base) + (axis ?? '');
}

function splitAxis(name: string): [string, string | undefined] {
  const m = /^(.*)(@\d+)$/.exec(name);
  return m ? [m[1]!, m[2]] : [name, undefined];
}

/**
 * A frozen-reason list (`reason; reason; ...`) cut to one terminal-friendly line: the first reason, shortened
 * to `max` characters, and how many more there are. JSON output keeps the whole text.
 */
export function summarizeReasons(reasons: string | undefined, max = 72): string {
  if (!reasons) return '';
  // Node and value names quoted in a reason read as module paths too: '/layer1/layer1.0/Add' -> 'layer1.0'.
  const readable = reasons.replace(/'(\/[^']*)'/g, (all, name: string) => {
    const path = modulePathOfScopedName(name);
    return path ? `'${path}'` : all;
  });
  const list = readable.split('; ');
  const first = list[0]!.length > max ? `${list[0]!.slice(0, max - 1)}…` : list[0]!;
  return list.length > 1 ? `${first} (+${list.length - 1} more)` : first;
}
