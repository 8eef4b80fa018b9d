import * as ort from 'onnxruntime-node';
import { batches } from '../data/batches.js';
import type { Dataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { UserError } from '../errors.js';
import { DataType, serializeModel, type Model, type Node, type Value } from '../ir/index.js';
import { createSession, type RuntimeOptions } from '../runtime/session.js';
import { STEP_SESSION_OPTIONS, buildStepGraph, type StepGraph } from '../train/step-graph.js';
import { classPriority, forEachFilterIndex, type ClassFilters } from './criteria.js';
import type { ChannelGroup, FilterLayout, GroupAnalysis } from './groups.js';

/** A BatchNormalization layer whose γ and β give its channels' Taylor terms. */
export interface NormSource {
  node: string;
  scale: string;
  bias: string;
}

/**
 * A producer of a group without BN (Conv, ConvTranspose, Gemm, MatMul, an embedding Gather) whose weight, and
 * bias if any, are initializers only it reads: its output positions' Taylor terms come from their gradients.
 * `layout` is used for its index arithmetic only (its tensor is the analysed model's, not the probe's).
 */
export interface LinearSource {
  node: string;
  /** The group's index in the analysis. */
  group: number;
  /** The channel class of each output position (an attention head owns D positions in each of q, k and v). */
  classOf: ArrayLike<number>;
  weight: string;
  bias?: string;
  layout: FilterLayout;
}

/**
 * First-order Taylor importance (Molchanov et al. 2019; the CPLI idea of letting the classification loss pick
 * channels): the loss change when a channel's activation a is removed is about |Σ a·∂L/∂a| over the batch and
 * positions. No activation gradient is exposed: for an output linear in parameters the sum is a parameter
 * sum. For a BatchNormalization output, a = γ·x̂ + β, so Σ a·∂L/∂a = γ·∂L/∂γ + β·∂L/∂β. For a layer linear in
 * its weights, a_j = Σ_i W_ji·x_i + b_j (Conv, Gemm, a MatMul and the bias Add after it), ∂L/∂W_ji sums x_i·∂L/∂a_j
 * over the batch and positions, so Σ a_j·∂L/∂a_j = Σ_i W_ji·∂L/∂W_ji + b_j·∂L/∂b_j: the producers' weight
 * gradients score models without BN (transformers, BN-folded CNNs). Both come from the autodiff pass (src/train)
 * with exactly those parameters trained.
 */
export class TaylorProbe {
  private constructor(
    private readonly step: StepGraph,
    private readonly session: Awaited<ReturnType<typeof createSession>>,
    private readonly base: Map<string, Float32Array>,
    readonly norms: NormSource[],
    readonly linears: readonly LinearSource[],
  ) {}

  /**
   * A probe for batches of exactly `batchSize` images: of `model`'s BatchNormalization layers, or with `linears`
   * (linearSources of an analysis of the same model) of those producers instead. Never both in one graph: a
   * weight trained beside γ and β becomes a graph input, onnxruntime then runs its layer with other kernels, and
   * the BN terms moved in the sixth digit (vgg.onnx); they are kept bit for bit.
   */
  static async create(
    model: Model,
    batchSize: number,
    runtime?: RuntimeOptions,
    linears: readonly LinearSource[] = [],
  ): Promise<TaylorProbe> {
    const norms = linears.length ? [] : normSources(model);
    const trained = new Set([
      ...norms.flatMap((n) => [n.scale, n.bias]),
      ...linears.flatMap((l) => (l.bias ? [l.weight, l.bias] : [l.weight])),
    ]);
    const step = await buildStepGraph(model, {
      batchSize,
      exposeGradients: true,
      sgd: { momentum: 0, weightDecay: 0 },
      trainable: (name) => trained.has(name),
    });
    const init = new Map(model.graph.initializers.map((v) => [v.name, v.initializer!]));
    const base = new Map<string, Float32Array>();
    for (const name of [...step.params.map((p) => p.name), ...step.runningStats.map((r) => r.name)])
      base.set(name, Float32Array.from(init.get(name)!.data as Float32Array));
    const session = await createSession(serializeModel(step.model), {
      ...runtime,
      overrides: STEP_SESSION_OPTIONS,
    });
    return new TaylorProbe(step, session, base, norms, linears);
  }

  /**
   * One batch: the mean loss, per BN layer (by node name) the signed Σ a·∂L/∂a of every channel, and the same
   * per output position of every linear source (`linear[i]` for `linears[i]`). `overrides` replaces parameter
   * values (by initializer name) for this batch only.
   */
  async terms(
    images: Float32Array,
    labels: Int32Array,
    overrides: Map<string, Float32Array> = new Map(),
  ): Promise<{ loss: number; terms: Map<string, Float64Array>; linear: Float64Array[] }> {
    const s = this.step;
    const feeds: Record<string, ort.Tensor> = {};
    for (const p of s.params)
      feeds[p.name] = new ort.Tensor('float32', overrides.get(p.name) ?? this.base.get(p.name)!, p.shape);
    for (const r of s.runningStats)
      feeds[r.name] = new ort.Tensor('float32', this.base.get(r.name)!, r.shape);
    feeds[s.inputs.images] = new ort.Tensor('float32', images, s.imageShape);
    feeds[s.inputs.labels] = new ort.Tensor(
      'int64',
      BigInt64Array.from(labels, (l) => BigInt(l)),
      [labels.length],
    );
    feeds[s.inputs.lr] = new ort.Tensor('float32', new Float32Array([0]), []);
    const out = await this.session.session.run(feeds);
    const grad = new Map(s.params.map((p) => [p.name, out[p.grad!]!.data as Float32Array]));
    const value = (name: string) => overrides.get(name) ?? this.base.get(name)!;
    const terms = new Map<string, Float64Array>();
    for (const n of this.norms) {
      const [g, b, dg, db] = [value(n.scale), value(n.bias), grad.get(n.scale)!, grad.get(n.bias)!];
      terms.set(
        n.node,
        Float64Array.from(g, (_, c) => g[c]! * dg[c]! + b[c]! * db[c]!),
      );
    }
    const linear = this.linears.map((l) =>
      linearTerms(
        l,
        value(l.weight),
        grad.get(l.weight)!,
        l.bias ? [value(l.bias), grad.get(l.bias)!] : undefined,
      ),
    );
    return { loss: (out[s.outputs.loss]!.data as Float32Array)[0]!, terms, linear };
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** The BatchNormalization layers whose γ and β are initializers. */
function normSources(model: Model): NormSource[] {
  return model.graph.nodes
    .filter((n) => n.opType === 'BatchNormalization' && n.inputs[1]?.initializer && n.inputs[2]?.initializer)
    .map((n) => ({ node: n.name, scale: n.inputs[1]!.name, bias: n.inputs[2]!.name }));
}

/** Per output position p: Σ over its filter of W·∂L/∂W, plus b_p·∂L/∂b_p. */
function linearTerms(
  source: LinearSource,
  w: Float32Array,
  dw: Float32Array,
  bias: [Float32Array, Float32Array] | undefined,
): Float64Array {
  const t = new Float64Array(source.classOf.length);
  for (let p = 0; p < t.length; p++) {
    forEachFilterIndex(source.layout, p, (at) => {
      t[p]! += w[at]! * dw[at]!;
    });
    if (bias) t[p]! += bias[0][p]! * bias[1][p]!;
  }
  return t;
}

/**
 * The producers whose weight gradients give Taylor terms: those of unfrozen groups without BN (a group with BN
 * keeps its BN terms), whose weight is a float initializer only that node reads (a shared weight's gradient
 * sums over every use, which breaks the identity).
 */
export function linearSources(analysis: GroupAnalysis): LinearSource[] {
  const sources: LinearSource[] = [];
  analysis.groups.forEach((g, group) => {
    if (g.frozen.length || g.norms.length) return;
    for (const { node, space, layout } of g.producers) {
      const weight = node.inputs.find((v) => v?.initializer === layout.weight);
      if (!weight || !ownFloat(weight)) continue;
      const bias = biasOf(node, layout, space.size);
      sources.push({
        node: node.name,
        group,
        classOf: space.classOf,
        weight: weight.name,
        ...(bias && { bias: bias.name }),
        layout,
      });
    }
  });
  return sources;
}

/** A float initializer read once, by a node (not a graph output). */
function ownFloat(v: Value): boolean {
  return v.initializer?.dataType === DataType.FLOAT && v.uses.length === 1;
}

/**
 * The bias of a producer with `size` output positions: its own bias input (Conv, Gemm), or torch's Linear on a
 * 3-D input, MatMul followed by an Add of a per-channel initializer. Without one the term is of the output
 * before any bias, still the exact derivative of scaling it.
 */
function biasOf(node: Node, layout: FilterLayout, size: number): Value | undefined {
  const perChannel = (v: Value | undefined) =>
    v && ownFloat(v) && v.initializer!.size === size && v.initializer!.dims.at(-1) === size ? v : undefined;
  if (layout.bias !== undefined) return perChannel(node.inputs[layout.bias]);
  const uses = node.outputs[0]?.uses ?? [];
  if (node.opType !== 'MatMul' || uses.length !== 1 || uses[0]!.node.opType !== 'Add') return undefined;
  return perChannel(uses[0]!.node.inputs[1 - uses[0]!.index]);
}

/**
 * Taylor class scores per group (undefined for a group with neither BN nor a linear source, which falls back
 * to another criterion): Σ over batches, and over the group's BN layers (where it has any, as before) or its
 * linear sources, of |Σ a·∂L/∂a| of each of the class's channels. `analysis` must be of the same model (same
 * node and initializer names).
 */
export async function taylorScores(
  model: Model,
  analysis: GroupAnalysis,
  dataset: Dataset,
  options: {
    spec: PreprocessSpec;
    indices: ArrayLike<number>;
    batchSize?: number;
    runtime?: RuntimeOptions;
    warn?: (line: string) => void;
  },
): Promise<(Float64Array | undefined)[]> {
  const linears = linearSources(analysis);
  const measured = new Set(linears.map((l) => l.group));
  const scores = analysis.groups.map((g, i) =>
    g.norms.length || measured.has(i) ? new Float64Array(g.size) : undefined,
  );
  const batchSize = Math.min(options.batchSize ?? 64, options.indices.length);
  const whole = Array.from(options.indices).slice(
    0,
    Math.floor(options.indices.length / batchSize) * batchSize,
  );
  // One probe for the BN terms and one for the weight terms, one after the other (see TaylorProbe.create).
  const probes = [...(normSources(model).length ? [[]] : []), ...(linears.length ? [linears] : [])];
  for (const sources of probes) {
    const probe = await weightProbe(model, batchSize, options, sources);
    if (!probe) {
      for (const l of sources) scores[l.group] = undefined;
      continue;
    }
    try {
      for await (const batch of batches(dataset, { spec: options.spec, batchSize, indices: whole }))
        addTerms(scores, analysis, probe, await probe.terms(batch.images, batch.labels));
    } finally {
      await probe.release();
    }
  }
  return scores;
}

/**
 * The probe of `sources` (the BN layers when empty). The weight terms reach further back than the BN terms
 * (from the first producer without BN, not the first BN), through ops that may have no backward rule: where
 * their step graph cannot be built, those groups fall back to l1 with a warning instead of ending the run.
 */
async function weightProbe(
  model: Model,
  batchSize: number,
  options: { runtime?: RuntimeOptions; warn?: (line: string) => void },
  sources: readonly LinearSource[],
): Promise<TaylorProbe | undefined> {
  try {
    return await TaylorProbe.create(model, batchSize, options.runtime, sources);
  } catch (e) {
    if (!sources.length || !(e instanceof UserError)) throw e;
    options.warn?.(`taylor: no weight-gradient terms for the groups without BN (${e.message}); they use l1`);
    return undefined;
  }
}

/** Adds one batch's |Σ a·∂L/∂a| of every channel to its class's score. */
function addTerms(
  scores: (Float64Array | undefined)[],
  analysis: GroupAnalysis,
  probe: TaylorProbe,
  { terms, linear }: { terms: Map<string, Float64Array>; linear: Float64Array[] },
): void {
  analysis.groups.forEach((g, i) => {
    for (const { node, space } of g.norms) {
      const t = terms.get(node.name);
      if (!t) continue;
      for (let p = 0; p < space.size; p++) scores[i]![space.classOf[p]!]! += Math.abs(t[p]!);
    }
  });
  probe.linears.forEach(({ group, classOf }, k) => {
    const t = linear[k]!;
    for (let p = 0; p < t.length; p++) scores[group]![classOf[p]!]! += Math.abs(t[p]!);
  });
}

/**
 * Keep order for the `taylor` criterion: classes by descending measured score. A group without scores (no BN
 * and no usable producer in it, or no data measured) falls back to `l1`, with a warning.
 */
export function taylorPriority(
  group: ChannelGroup,
  scores: ArrayLike<number> | undefined,
  seed: number,
  warn: (msg: string) => void,
  filters: ClassFilters,
): number[] {
  if (!scores || scores.length !== group.size) {
    warn(
      'taylor: some groups have no measured Taylor scores (neither BatchNormalization nor a producer whose own weights are initializers, or no --data); they use l1',
    );
    return classPriority(group, 'l1', seed, warn, filters);
  }
  return Array.from({ length: group.size }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]! || a - b);
}
