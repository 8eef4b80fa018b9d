import * as ort from 'onnxruntime-node';
import { batches } from '../data/batches.js';
import type { Dataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { serializeModel, type Model } from '../ir/index.js';
import { createSession, type RuntimeOptions } from '../runtime/session.js';
import { STEP_SESSION_OPTIONS, buildStepGraph, type StepGraph } from '../train/step-graph.js';
import { classPriority, type ClassFilters } from './criteria.js';
import type { ChannelGroup, GroupAnalysis } from './groups.js';

/**
 * First-order Taylor importance (Molchanov et al. 2019; the CPLI idea of letting the classification loss pick
 * channels): the loss change when a channel's activation a is removed is about |Σ a·∂L/∂a| over the batch and
 * positions. For the output of a BatchNormalization, a = γ·x̂ + β, so Σ a·∂L/∂a = γ·∂L/∂γ + β·∂L/∂β: the
 * parameter gradients of the autodiff pass (src/train) give it without exposing activation gradients. A channel
 * class scores the sum of |that term| over its group's BN layers and over calibration batches.
 */
export class TaylorProbe {
  private constructor(
    private readonly step: StepGraph,
    private readonly session: Awaited<ReturnType<typeof createSession>>,
    private readonly base: Map<string, Float32Array>,
    readonly norms: { node: string; scale: string; bias: string }[],
  ) {}

  /** A probe of `model`'s BatchNormalization layers for batches of exactly `batchSize` images. */
  static async create(model: Model, batchSize: number, runtime?: RuntimeOptions): Promise<TaylorProbe> {
    const norms = model.graph.nodes
      .filter(
        (n) => n.opType === 'BatchNormalization' && n.inputs[1]?.initializer && n.inputs[2]?.initializer,
      )
      .map((n) => ({ node: n.name, scale: n.inputs[1]!.name, bias: n.inputs[2]!.name }));
    const trained = new Set(norms.flatMap((n) => [n.scale, n.bias]));
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
    return new TaylorProbe(step, session, base, norms);
  }

  /**
   * One batch: the mean loss and, per BN layer (by node name), the signed Σ a·∂L/∂a of every channel.
   * `overrides` replaces parameter values (by initializer name) for this batch only.
   */
  async terms(
    images: Float32Array,
    labels: Int32Array,
    overrides: Map<string, Float32Array> = new Map(),
  ): Promise<{ loss: number; terms: Map<string, Float64Array> }> {
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
    return { loss: (out[s.outputs.loss]!.data as Float32Array)[0]!, terms };
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/**
 * Taylor class scores per group (undefined for groups without BN, which fall back to another criterion):
 * Σ over batches and over the group's BN layers of |Σ a·∂L/∂a| for the channel class. `analysis` must be of
 * the same model (same node names).
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
  },
): Promise<(Float64Array | undefined)[]> {
  const batchSize = Math.min(options.batchSize ?? 64, options.indices.length);
  const probe = await TaylorProbe.create(model, batchSize, options.runtime);
  const scores = analysis.groups.map((g) => (g.norms.length ? new Float64Array(g.size) : undefined));
  const whole = Array.from(options.indices).slice(
    0,
    Math.floor(options.indices.length / batchSize) * batchSize,
  );
  try {
    for await (const batch of batches(dataset, { spec: options.spec, batchSize, indices: whole })) {
      const { terms } = await probe.terms(batch.images, batch.labels);
      analysis.groups.forEach((g, i) => {
        for (const { node, space } of g.norms) {
          const t = terms.get(node.name);
          if (!t) continue;
          for (let p = 0; p < space.size; p++) scores[i]![space.classOf[p]!]! += Math.abs(t[p]!);
        }
      });
    }
  } finally {
    await probe.release();
  }
  return scores;
}

/**
 * Keep order for the `taylor` criterion: classes by descending measured score. A group without scores (no BN
 * in it, or no data measured) falls back to `l1`, with a warning.
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
      'taylor: some groups have no measured Taylor scores (no BatchNormalization in them, or no --data); they use l1',
    );
    return classPriority(group, 'l1', seed, warn, filters);
  }
  return Array.from({ length: group.size }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]! || a - b);
}
