import { UserError } from '../errors.js';
import type { PreprocessSpec } from './preprocess.js';

/** One decoded image: 8-bit, interleaved (HWC), already resized and center-cropped as the spec asks. */
export interface Sample {
  pixels: Uint8Array;
  height: number;
  width: number;
  channels: number;
}

export type DatasetKind = 'image-folder' | 'cifar-binary' | 'idx' | 'unlabelled' | 'tokens';

/** What every data set has: images addressed by index, decoded on demand. */
export interface ImageSet {
  readonly kind: DatasetKind;
  /** The folder or file it was opened from. */
  readonly path: string;
  readonly length: number;
  /** Names sample i in messages (its file, or `file#record`). */
  describe(index: number): string;
  /** Decodes sample i with the spec's channel count, resize and crop. */
  load(index: number, spec: PreprocessSpec): Promise<Sample>;
}

/**
 * A labelled image collection addressed by index. Only labels (and, for image folders, file names) are held
 * in memory; pixels are produced on demand by `load`, so a dataset of any size streams.
 */
export interface Dataset extends ImageSet {
  readonly kind: Exclude<DatasetKind, 'unlabelled' | 'tokens'>;
  readonly labelled?: true;
  /** Label i is `classNames[i]`. */
  readonly classNames: readonly string[];
  /** The label of every sample, in index order. */
  readonly labels: Int32Array;
}

/**
 * Images without labels (a folder of images with no class subfolders, or a list file): enough for what reads
 * only images (BN recalibration, compensation, distillation); anything needing labels calls `requireLabels`.
 */
export interface UnlabelledDataset extends ImageSet {
  /** `tokens`: a text model's token ids (src/data/tokens.ts), read the same way by what needs no labels. */
  readonly kind: 'unlabelled' | 'tokens';
  readonly labelled: false;
  readonly labels: undefined;
  readonly classNames: undefined;
}

/** What `openDataset(path, { labels: 'optional' })` returns. */
export type AnyDataset = Dataset | UnlabelledDataset;

export function hasLabels(dataset: AnyDataset): dataset is Dataset {
  return dataset.labelled !== false;
}

/**
 * The data set as a labelled one, or one line saying it has none. `need` completes the sentence: what needs
 * the labels and how to give them.
 */
export function requireLabels(
  dataset: AnyDataset,
  need = 'this command needs labelled images: one subfolder of images per class',
): Dataset {
  if (hasLabels(dataset)) return dataset;
  throw new UserError(`this data set has no labels; ${need}`, dataset.path);
}

/** JSON-friendly summary of a dataset for --json output. */
export function describeDataset(dataset: AnyDataset): object {
  return {
    kind: dataset.kind,
    path: dataset.path,
    samples: dataset.length,
    classes: dataset.classNames?.length ?? null,
  };
}
