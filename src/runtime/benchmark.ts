import { UserError } from '../errors.js';
import type { ModelSession } from './session.js';

export interface LatencyStats {
  model: string;
  batch: number;
  inputShape: number[];
  runs: number;
  medianMs: number;
  p90Ms: number;
  meanMs: number;
  minMs: number;
  /** Images per second at the median latency. */
  imagesPerSecond: number;
}

export interface BenchmarkOptions {
  batch?: number;
  /** Untimed runs per model first (arena growth, kernel selection, caches). Default 3. */
  warmup?: number;
  /** Timed runs per model; default: as many as fit in `seconds`. */
  runs?: number;
  /** Time budget for the timed runs of all models together when `runs` is absent. Default 10. */
  seconds?: number;
  /** Fills symbolic dimensions other than the batch (e.g. an image size the model leaves open). */
  inputShape?: number[];
  /** Called after every round with the fraction done (0..1). */
  onProgress?: (fraction: number) => void;
}

/**
 * Latency of one batch per model. With several models the runs alternate (A, B, A, B, …) so that load from
 * elsewhere on the machine affects all of them alike, which makes their ratio trustworthy.
 */
export async function benchmark(
  models: ModelSession[],
  options: BenchmarkOptions = {},
): Promise<LatencyStats[]> {
  const batch = options.batch ?? 1;
  if (!(Number.isInteger(batch) && batch > 0))
    throw new UserError(`--batch must be a positive integer, not ${batch}`);
  const inputs = models.map((m) => {
    const shape = concreteShape(m, batch, options.inputShape);
    const elements = shape.reduce((a, b) => a * b, 1);
    if (!(elements <= MAX_INPUT_ELEMENTS))
      throw new UserError(
        `an input of ${shape.join('x')} is ${elements} values, over the ${MAX_INPUT_ELEMENTS} (4 GiB of float32) a benchmark feeds`,
        m.source,
      );
    return { shape, data: seededNoise(elements) };
  });
  for (let w = 0; w < (options.warmup ?? 3); w++) {
    for (const [i, m] of models.entries()) await m.run(inputs[i]!.data, inputs[i]!.shape);
  }

  const times: number[][] = models.map(() => []);
  const budgetMs = (options.seconds ?? 10) * 1000;
  const start = performance.now();
  // A fixed count when asked; otherwise until the time budget is spent, with at least 3 runs for a median.
  const fraction = (r: number) =>
    options.runs !== undefined ? r / options.runs : r < 3 ? 0 : (performance.now() - start) / budgetMs;
  for (let r = 0; fraction(r) < 1; r++) {
    for (const [i, m] of models.entries()) {
      const started = performance.now();
      await m.run(inputs[i]!.data, inputs[i]!.shape);
      times[i]!.push(performance.now() - started);
    }
    options.onProgress?.(Math.min(1, fraction(r + 1)));
  }
  return models.map((m, i) => summarise(m.source, batch, inputs[i]!.shape, times[i]!));
}

/** Most values one benchmark input may hold (a typed array past this is refused by V8 or exhausts memory). */
const MAX_INPUT_ELEMENTS = 2 ** 30;

/** The model's input shape with the batch (first) dimension set and other symbolic dims taken from `given`. */
function concreteShape(model: ModelSession, batch: number, given: number[] | undefined): number[] {
  const declared = model.inputShape;
  return declared.map((d, i) => {
    if (i === 0) return batch;
    if (typeof d === 'number') return d;
    const g = given?.[i - 1];
    if (g === undefined) {
      throw new UserError(
        `input dimension ${i} is symbolic ('${d}'); give the input shape, e.g. --input-shape 1x3x224x224`,
        model.source,
      );
    }
    return g;
  });
}

/** Deterministic input values in [-1, 1): timings should not depend on denormals or on the run. */
function seededNoise(length: number): Float32Array {
  const data = new Float32Array(length);
  let state = 12345;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    data[i] = state / 2147483648 - 1;
  }
  return data;
}

function summarise(model: string, batch: number, inputShape: number[], times: number[]): LatencyStats {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  const medianMs = median(times);
  return {
    model,
    batch,
    inputShape,
    runs: times.length,
    medianMs,
    p90Ms: at(0.9),
    meanMs: times.reduce((a, b) => a + b, 0) / times.length,
    minMs: sorted[0]!,
    imagesPerSecond: (batch * 1000) / medianMs,
  };
}

/** The middle value (mean of the two middle values for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
