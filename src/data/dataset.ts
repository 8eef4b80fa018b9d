import type { PreprocessSpec } from './preprocess.js';

/** One decoded image: 8-bit, interleaved (HWC), already resized and center-cropped as the spec asks. */
export interface Sample {
  pixels: Uint8Array;
  height: number;
  width: number;
  channels: number;
}

export type DatasetKind = 'image-folder' | 'cifar-binary' | 'idx';

/**
 * A labelled image collection addressed by index. Only labels (and, for image folders, file names) are held
 * in memory; pixels are produced on demand by `load`, so a dataset of any size streams.
 */
export interface Dataset {
  readonly kind: DatasetKind;
  /** The folder or file it was opened from. */
  readonly path: string;
  /** Label i is `classNames[i]`. */
  readonly classNames: readonly string[];
  /** The label of every sample, in index order. */
  readonly labels: Int32Array;
  readonly length: number;
  /** Names sample i in messages (its file, or `file#record`). */
  describe(index: number): string;
  /** Decodes sample i with the spec's channel count, resize and crop. */
  load(index: number, spec: PreprocessSpec): Promise<Sample>;
}

/** JSON-friendly summary of a dataset for --json output. */
export function describeDataset(dataset: Dataset): object {
  return {
    kind: dataset.kind,
    path: dataset.path,
    samples: dataset.length,
    classes: dataset.classNames.length,
  };
}
