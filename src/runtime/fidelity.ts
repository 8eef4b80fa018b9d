import { batches } from '../data/batches.js';
import type { AnyDataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { UserError } from '../errors.js';
import { BOX_ROWS, looksLikeDetection } from '../train/output-matching.js';
import { createSession, feedsOf, type ModelSession, type RuntimeOptions } from './session.js';

/** How closely a model reproduces the original's outputs on the same images (no labels needed). */
export interface Fidelity {
  /**
   * Mean over outputs of the normalised error (normalisedError: per channel of axis 1, the squared difference
   * from the original divided by the original's spread), so 0 is identical and 1 is no better than predicting
   * each channel's mean everywhere; 1 - error is the R² the pipeline reports.
   */
  error: number;
  perOutput: { name: string; error: number }[];
  images: number;
}

export interface FidelityOptions {
  spec: PreprocessSpec;
  /** Which images, in order; default all. */
  indices?: ArrayLike<number>;
  batchSize?: number;
  runtime?: RuntimeOptions;
}

/**
 * Scores models against the original on one set of images. The original's outputs are computed once and
 * kept, so ranking several candidates runs the original only once.
 */
export class FidelityJudge {
  private reference: Output[][] | undefined;
  private names: readonly string[] = [];

  constructor(
    private readonly original: Uint8Array,
    private readonly images: AnyDataset,
    private readonly options: FidelityOptions,
  ) {}

  async score(candidate: Uint8Array): Promise<Fidelity> {
    return (await this.scoreWithOutputs(candidate)).fidelity;
  }

  /** The original's outputs on the judge's images, batch by batch (run once, and kept for the scores). */
  async originalOutputs(): Promise<RunOutputs['outputs']> {
    return (this.reference ??= (await this.outputsOf(this.original, true)).outputs);
  }

  /** The score, and the candidate's outputs batch by batch (for a task figure from the same run). */
  async scoreWithOutputs(candidate: Uint8Array): Promise<{ fidelity: Fidelity; outputs: RunOutputs }> {
    const reference = await this.originalOutputs();
    if (reference.length === 0) throw new UserError('no images to compare the outputs on', this.images.path);
    const run = await this.outputsOf(candidate, false);
    const outputs = run.outputs;
    const perOutput = this.names.map((name, o) => ({
      name,
      error: normalisedError(
        reference.map((b) => b[o]!),
        outputs.map((b) => b[o]!),
        name,
      ),
    }));
    const error = perOutput.reduce((s, p) => s + p.error, 0) / Math.max(1, perOutput.length);
    return {
      fidelity: { error, perOutput, images: this.options.indices?.length ?? this.images.length },
      outputs: run,
    };
  }

  private async outputsOf(model: Uint8Array, isOriginal: boolean): Promise<RunOutputs> {
    const session: ModelSession = await createSession(model, this.options.runtime ?? {});
    try {
      if (isOriginal) this.names = session.session.outputNames;
      const out: Output[][] = [];
      const shapes: RunOutputs['batches'] = [];
      for await (const batch of batches(this.images, {
        spec: this.options.spec,
        batchSize: this.options.batchSize ?? 32,
        ...(this.options.indices && { indices: this.options.indices }),
      })) {
        const result = await session.session.run(feedsOf(batch, session.inputName));
        out.push(
          this.names.map((n) => ({
            data: Float32Array.from(result[n]!.data as Float32Array),
            dims: result[n]!.dims.map(Number),
          })),
        );
        shapes.push({ shape: batch.shape, n: batch.n, indices: batch.indices });
      }
      return { names: this.names, outputs: out, batches: shapes };
    } finally {
      await session.release();
    }
  }
}

/** One output of one batch. */
interface Output {
  data: Float32Array;
  dims: number[];
}

/** A model's outputs on the judge's images: per batch, every output (in `names` order) and the batch. */
export interface RunOutputs {
  names: readonly string[];
  outputs: Output[][];
  batches: { shape: [number, number, number, number]; n: number; indices: Int32Array }[];
}

/**
 * The squared error against the original, divided by the original's spread, per channel of axis 1 (each
 * channel's deviation from its own mean), averaged over the channels: a detector's box rows in pixels and its
 * score rows in [0, 1] count alike, as a segmenter's class maps do. A channel with no spread counts its raw error.
 * In a detection output [N, 4 + nc, anchors] (output-matching.ts looksLikeDetection) each anchor's box rows
 * weigh by the original's best class score there: the boxes it detects, not the background anchors' (whose box
 * rows are noise nobody reads, and most of the spread).
 */
function normalisedError(reference: Output[], candidate: Output[], name: string): number {
  const dims = reference[0]!.dims;
  const channels = dims.length >= 2 ? dims[1]! : 1;
  const inner = dims.slice(2).reduce((a, b) => a * b, 1);
  const weightOf = anchorWeights(reference, dims);
  const sum = new Float64Array(channels);
  const count = new Float64Array(channels);
  reference.forEach((r, b) => {
    const w = weightOf(b);
    for (let i = 0; i < r.data.length; i++) {
      const c = Math.floor(i / inner) % channels;
      const wi = w(c, i);
      sum[c]! += wi * r.data[i]!;
      count[c]! += wi;
    }
  });
  const err = new Float64Array(channels);
  const spread = new Float64Array(channels);
  reference.forEach((r, b) => {
    const s = candidate[b]!.data;
    if (s.length !== r.data.length)
      throw new UserError(`output '${name}' has ${s.length} values per batch, the original ${r.data.length}`);
    const w = weightOf(b);
    for (let i = 0; i < s.length; i++) {
      const c = Math.floor(i / inner) % channels;
      const wi = w(c, i);
      err[c]! += wi * (s[i]! - r.data[i]!) ** 2;
      spread[c]! += wi * (r.data[i]! - sum[c]! / Math.max(count[c]!, 1e-12)) ** 2;
    }
  });
  let total = 0;
  for (let c = 0; c < channels; c++) total += spread[c]! > 0 ? err[c]! / spread[c]! : err[c]!;
  return total / channels;
}

/**
 * Per batch, the weight of element i (channel c): 1, except in the box rows of a detection output, where it is
 * the original's best class score at the element's anchor.
 */
function anchorWeights(reference: Output[], dims: number[]): (b: number) => (c: number, i: number) => number {
  const one = (): number => 1;
  const rows = dims[1] ?? 0;
  const anchors = dims[2] ?? 0;
  const ranges = Array.from({ length: rows }, () => ({ min: Infinity, max: -Infinity }));
  if (dims.length === 3)
    for (const r of reference)
      for (let i = 0; i < r.data.length; i++) {
        const range = ranges[Math.floor(i / anchors) % rows]!;
        range.min = Math.min(range.min, r.data[i]!);
        range.max = Math.max(range.max, r.data[i]!);
      }
  if (!looksLikeDetection(dims.length, ranges)) return () => one;
  return (b) => {
    const data = reference[b]!.data;
    const images = data.length / (rows * anchors);
    const best = new Float32Array(images * anchors);
    for (let n = 0; n < images; n++)
      for (let c = BOX_ROWS; c < rows; c++)
        for (let a = 0; a < anchors; a++)
          best[n * anchors + a] = Math.max(best[n * anchors + a]!, data[(n * rows + c) * anchors + a]!);
    return (c, i) => (c < BOX_ROWS ? best[Math.floor(i / (rows * anchors)) * anchors + (i % anchors)]! : 1);
  };
}
