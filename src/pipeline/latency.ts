import { countCost } from '../analysis/cost.js';
import type { Model } from '../ir/index.js';
import { benchmark } from '../runtime/benchmark.js';
import { createSession, type RuntimeOptions } from '../runtime/session.js';

export interface LatencyOptions {
  /** Input dims, batch included. */
  shape: number[];
  /** Timed runs for all models together fill this many seconds (at least 3 each); default 1. */
  seconds?: number;
  runtime?: RuntimeOptions;
  /** Integer inputs' id bounds by name (src/shapes/probe.ts idBounds). */
  idBounds?: Record<string, number>;
}

/**
 * Median latency (ms) of one batch for each model, measured with the runtime's benchmark: runs alternate
 * between the models, so a before/after pair sees the same machine load.
 */
export async function measureLatencies(models: Uint8Array[], options: LatencyOptions): Promise<number[]> {
  const sessions = [];
  try {
    for (const m of models) sessions.push(await createSession(m, options.runtime));
    // Bounded: 2 untimed runs each, then timed runs for `seconds` in all (at least 3 each).
    const stats = await benchmark(sessions, {
      batch: options.shape[0],
      inputShape: options.shape.slice(1),
      seconds: options.seconds ?? 1,
      warmup: 2,
      ...(options.idBounds && { idBounds: options.idBounds }),
    });
    return stats.map((s) => s.medianMs);
  } finally {
    for (const s of sessions) await s.release();
  }
}

export interface LatencySearchStep {
  flops: number;
  medianMs: number;
  ratio: number;
}

/**
 * Finds the largest MAC budget whose measured latency is at most `target` times the original's: bisection on
 * the FLOPs ratio, where each step prunes a candidate (by `candidateAt`) and times it on this machine. MACs are
 * only a proxy for speed (halving them often buys ~1.1x), so the measurement decides.
 */
export async function searchLatencyBudget(
  target: number,
  baselineMs: number,
  candidateAt: (flops: number) => Promise<Uint8Array>,
  measure: (bytes: Uint8Array) => Promise<number>,
  options: { steps?: number; minFlops?: number } = {},
): Promise<{ flops: number; medianMs: number; steps: LatencySearchStep[] }> {
  let lo = options.minFlops ?? 0.05;
  let hi = 1;
  const steps: LatencySearchStep[] = [];
  const tryAt = async (flops: number): Promise<number> => {
    const ms = await measure(await candidateAt(flops));
    steps.push({ flops, medianMs: ms, ratio: ms / baselineMs });
    return ms;
  };
  const loMs = await tryAt(lo);
  if (loMs > target * baselineMs) return { flops: lo, medianMs: loMs, steps };
  let best = { flops: lo, medianMs: loMs };
  for (let i = 0; i < (options.steps ?? 7); i++) {
    const mid = (lo + hi) / 2;
    const ms = await tryAt(mid);
    if (ms <= target * baselineMs) {
      lo = mid;
      best = { flops: mid, medianMs: ms };
    } else hi = mid;
  }
  return { ...best, steps };
}

/**
 * onnxruntime's CPU cost per MAC of a convolution by the channel multiple it runs at, relative to its blocked
 * (NCHWc) kernels: those need input and output channels (per group; depthwise: the channels) in multiples of the
 * block, 8 with AVX2; other convolutions fall back to im2col and SGEMM. Measured, not derived: the bundled
 * example at 50% MACs ran 1.95x slower than the original with exact widths and 1.15x slower at multiples of 4
 * (batch 64), ResNet-56 1.16x faster with exact widths (docs/history.md, "Latency at a MAC budget"). The
 * first matching row applies. A static table, so a rounding chosen by it is the same on every machine and at
 * any load.
 */
export const ORT_CHANNEL_COST: readonly { multiple: number; costPerMac: number }[] = [
  { multiple: 8, costPerMac: 1 },
  { multiple: 4, costPerMac: 2 },
  { multiple: 1, costPerMac: 2.5 },
];

/** The table's cost per MAC for a layer running at `channels` (a count below one block is the graph input). */
function costPerMac(channels: number[]): number {
  const row = ORT_CHANNEL_COST.find((r) => channels.every((c) => c % r.multiple === 0));
  return row?.costPerMac ?? ORT_CHANNEL_COST.at(-1)!.costPerMac;
}

/**
 * The static latency estimate of a model: MACs per image (src/analysis/cost.ts), each Conv's weighted by
 * ORT_CHANNEL_COST at its channel counts. Only ratios between two models of one network mean anything; it is a
 * deterministic stand-in for a measurement, used to judge roundings without timing anything.
 */
export function staticLatencyCost(model: Model, inputShapes?: Record<string, number[]> | number[]): number {
  const weights = new Map(model.graph.initializers.map((v) => [v.name, v.initializer!.dims]));
  const groups = new Map<string, number>();
  for (const n of model.graph.nodes)
    if (n.opType === 'Conv') {
      const g = n.attributes.get('group');
      groups.set(n.name || (n.outputs[0]?.name ?? ''), typeof g?.value === 'number' ? g.value : 1);
    }
  let total = 0;
  for (const layer of countCost(model, { inputShape: inputShapes }).perNode) {
    const dims = layer.weight !== undefined ? weights.get(layer.weight) : undefined;
    if (layer.opType !== 'Conv' || !dims || dims.length < 2) {
      total += layer.macs;
      continue;
    }
    const group = groups.get(layer.name) ?? 1;
    const out = dims[0]!;
    const inPerGroup = dims[1]!;
    // Depthwise: one channel per group, blocked by channels. The first layer's few input channels (RGB, grey)
    // have a kernel of their own that reads NCHW input, so they never cost the fallback.
    const channels =
      inPerGroup === 1 && group > 1 ? [out] : [out / group, ...(inPerGroup * group < 8 ? [] : [inPerGroup])];
    total += layer.macs * costPerMac(channels);
  }
  return total;
}
