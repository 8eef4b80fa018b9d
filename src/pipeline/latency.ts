import { benchmark } from '../runtime/benchmark.js';
import { createSession, type RuntimeOptions } from '../runtime/session.js';

export interface LatencyOptions {
  /** Input dims, batch included. */
  shape: number[];
  /** Timed runs for all models together fill this many seconds (at least 3 each); default 1. */
  seconds?: number;
  runtime?: RuntimeOptions;
}

/**
 * Median latency (ms) of one batch for each model, measured with the runtime's benchmark: runs alternate
 * between the models, so a before/after pair sees the same machine load.
 */
export async function measureLatencies(models: Uint8Array[], options: LatencyOptions): Promise<number[]> {
  const sessions = [];
  try {
    for (const m of models) sessions.push(await createSession(m, options.runtime));
    const stats = await benchmark(sessions, {
      batch: options.shape[0],
      inputShape: options.shape.slice(1),
      seconds: options.seconds ?? 1,
      warmup: 5,
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
