import * as ort from 'onnxruntime-node';
import { batches } from '../data/batches.js';
import type { Dataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { UserError } from '../errors.js';
import { createSession, type ModelSession, type RuntimeOptions } from './session.js';

/** How closely a model reproduces the original's outputs on the same images (no labels needed). */
export interface Fidelity {
  /**
   * Mean over outputs of the normalised error: the squared difference from the original's output divided by
   * the original output's spread (its squared deviation from its mean), so 0 is identical and 1 is no better
   * than predicting the original's mean everywhere.
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
  private reference: Float32Array[][] | undefined;
  private names: readonly string[] = [];

  constructor(
    private readonly original: Uint8Array,
    private readonly images: Dataset,
    private readonly options: FidelityOptions,
  ) {}

  async score(candidate: Uint8Array): Promise<Fidelity> {
    const reference = (this.reference ??= await this.outputsOf(this.original, true));
    const outputs = await this.outputsOf(candidate, false);
    const perOutput = this.names.map((name, o) => {
      let err = 0;
      let spread = 0;
      const all = reference.map((b) => b[o]!);
      const count = all.reduce((n, a) => n + a.length, 0);
      const mean = all.reduce((s, a) => s + a.reduce((x, y) => x + y, 0), 0) / Math.max(1, count);
      reference.forEach((batch, b) => {
        const t = batch[o]!;
        const s = outputs[b]![o]!;
        if (s.length !== t.length)
          throw new UserError(`output '${name}' has ${s.length} values per batch, the original ${t.length}`);
        for (let i = 0; i < t.length; i++) {
          err += (s[i]! - t[i]!) ** 2;
          spread += (t[i]! - mean) ** 2;
        }
      });
      return { name, error: spread > 0 ? err / spread : err > 0 ? Infinity : 0 };
    });
    const error = perOutput.reduce((s, p) => s + p.error, 0) / Math.max(1, perOutput.length);
    return { error, perOutput, images: this.options.indices?.length ?? this.images.length };
  }

  private async outputsOf(model: Uint8Array, isOriginal: boolean): Promise<Float32Array[][]> {
    const session: ModelSession = await createSession(model, this.options.runtime ?? {});
    try {
      if (isOriginal) this.names = session.session.outputNames;
      const out: Float32Array[][] = [];
      for await (const batch of batches(this.images, {
        spec: this.options.spec,
        batchSize: this.options.batchSize ?? 32,
        ...(this.options.indices && { indices: this.options.indices }),
      })) {
        const result = await session.session.run({
          [session.inputName]: new ort.Tensor('float32', batch.images, batch.shape),
        });
        out.push(this.names.map((n) => Float32Array.from(result[n]!.data as Float32Array)));
      }
      return out;
    } finally {
      await session.release();
    }
  }
}
