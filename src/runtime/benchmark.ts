import * as ort from 'onnxruntime-node';
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
  /**
   * Fills symbolic dimensions other than the batch (e.g. an image size the model leaves open): one shape for
   * every input, or one per input name (token ids and a mask of the same length, say).
   */
  inputShape?: number[] | Record<string, number[]>;
  /** Integer inputs (token ids) get values below this bound, by input name (an embedding's rows); default 100. */
  idBounds?: Record<string, number>;
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
  const inputs = models.map((m) => benchInputs(m, batch, options));
  for (let w = 0; w < (options.warmup ?? 3); w++) {
    for (const [i, m] of models.entries()) await m.runFeeds(inputs[i]!.feeds);
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
      await m.runFeeds(inputs[i]!.feeds);
      times[i]!.push(performance.now() - started);
    }
    options.onProgress?.(Math.min(1, fraction(r + 1)));
  }
  return models.map((m, i) => summarise(m.source, batch, inputs[i]!.shape, times[i]!));
}

/**
 * One input tensor per model input, at the batch and the given shape: seeded noise for floats, ids below the
 * input's bound for integers (token ids; 100 unless the caller knows the embedding), false for booleans.
 */
function benchInputs(
  m: ModelSession,
  batch: number,
  options: BenchmarkOptions,
): { shape: number[]; feeds: Record<string, ort.Tensor> } {
  const feeds: Record<string, ort.Tensor> = {};
  let first: number[] | undefined;
  for (const input of m.inputs) {
    const given = Array.isArray(options.inputShape) ? options.inputShape : options.inputShape?.[input.name];
    const shape = concreteShape(m, input.shape, batch, given);
    first ??= shape;
    const elements = shape.reduce((a, b) => a * b, 1);
    if (!(elements <= MAX_INPUT_ELEMENTS))
      throw new UserError(
        `an input of ${shape.join('x')} is ${elements} values, over the ${MAX_INPUT_ELEMENTS} (4 GiB of float32) a benchmark feeds`,
        m.source,
      );
    const noise = seededNoise(elements);
    const bound = options.idBounds?.[input.name] ?? 100;
    const ids = (): number[] => Array.from(noise, (x) => Math.floor(((x + 1) / 2) * bound));
    if (input.type === 'float32') feeds[input.name] = new ort.Tensor('float32', noise, shape);
    else if (input.type === 'int64')
      feeds[input.name] = new ort.Tensor('int64', BigInt64Array.from(ids(), BigInt), shape);
    else if (input.type === 'int32')
      feeds[input.name] = new ort.Tensor('int32', Int32Array.from(ids()), shape);
    else if (input.type === 'bool')
      feeds[input.name] = new ort.Tensor('bool', new Uint8Array(elements), shape);
    else
      throw new UserError(
        `input '${input.name}' is ${input.type}: a benchmark feeds float, integer and bool inputs`,
        m.source,
      );
  }
  return { shape: first ?? [], feeds };
}

/** Most values one benchmark input may hold (a typed array past this is refused by V8 or exhausts memory). */
const MAX_INPUT_ELEMENTS = 2 ** 30;

/** The model's input shape with the batch (first) dimension set and other symbolic dims taken from `given`. */
function concreteShape(
  model: ModelSession,
  declared: readonly (number | string)[],
  batch: number,
  given: number[] | undefined,
): number[] {
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
