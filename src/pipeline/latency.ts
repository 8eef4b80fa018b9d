import * as ort from 'onnxruntime-node';
import { createSession, type RuntimeOptions } from '../runtime/session.js';

export interface LatencyOptions {
  /** Input dims, batch included. */
  shape: number[];
  warmup?: number;
  runs?: number;
  runtime?: RuntimeOptions;
}

export interface Latency {
  medianMs: number;
  p90Ms: number;
  runs: number;
}

/** Median and p90 wall time of `session.run` on one random batch, after warm-up. */
export async function measureLatency(model: Uint8Array | string, options: LatencyOptions): Promise<Latency> {
  const session = await createSession(model, options.runtime);
  try {
    const size = options.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(size);
    for (let i = 0; i < size; i++) data[i] = Math.sin(i * 12.9898) * 0.5;
    const feeds = { [session.inputName]: new ort.Tensor('float32', data, options.shape) };
    for (let i = 0; i < (options.warmup ?? 5); i++) await session.session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < (options.runs ?? 30); i++) {
      const t = performance.now();
      await session.session.run(feeds);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    return { medianMs: quantile(times, 0.5), p90Ms: quantile(times, 0.9), runs: times.length };
  } finally {
    await session.release();
  }
}

function quantile(sorted: number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
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
