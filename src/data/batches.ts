import type { Tensor } from 'onnxruntime-node';
import { UserError } from '../errors.js';
import type { AnyDataset, Dataset, Sample } from './dataset.js';
import { normalisationTable, type PreprocessSpec } from './preprocess.js';
import { mixSeed, mulberry32, randomInt } from './prng.js';
import { isTokenSet, tokenBatches } from './tokens.js';

/** A batch of images; from an unlabelled data set it has no labels. */
export interface ImageBatch {
  /** NCHW float32, normalised. */
  images: Float32Array;
  labels?: Int32Array;
  n: number;
  shape: [n: number, c: number, h: number, w: number];
  /** Dataset index of each sample. */
  indices: Int32Array;
  /**
   * A token set's batch: the model's inputs by name (token ids, masks), [n, sequence] each; `images` is then
   * empty (src/data/tokens.ts). Run it with feedsOf (src/runtime/session.ts).
   */
  feeds?: Readonly<Record<string, Tensor>>;
}

/** A batch of a labelled data set. */
export interface Batch extends ImageBatch {
  labels: Int32Array;
}

export interface BatchOptions {
  spec: PreprocessSpec;
  batchSize: number;
  /** Which samples, in this order; all, in index order, when absent. */
  indices?: ArrayLike<number>;
  /** Apply `spec.augment` with this seed (a sample's crop and flip depend only on seed, epoch and index). */
  augmentSeed?: number;
  epoch?: number;
  /** Batches decoded ahead of the one being consumed; bounds memory to (1 + ahead) batches of pixels. */
  ahead?: number;
}

/**
 * Streams a dataset as normalised batches. Decoding of the next `ahead` batches is started before a batch is
 * handed out, so it runs on libuv's threads while the caller's (synchronous) onnxruntime call holds the main
 * thread.
 */
export function batches(dataset: Dataset, options: BatchOptions): AsyncGenerator<Batch>;
export function batches(dataset: AnyDataset, options: BatchOptions): AsyncGenerator<ImageBatch>;
export async function* batches(dataset: AnyDataset, options: BatchOptions): AsyncGenerator<ImageBatch> {
  const { spec, batchSize } = options;
  if (!(Number.isInteger(batchSize) && batchSize > 0))
    throw new UserError(`batch size must be a positive integer, not ${batchSize}`);
  if (isTokenSet(dataset)) return yield* tokenBatches(dataset, options);
  const indexAt = options.indices ? (k: number) => options.indices![k]! : (k: number) => k;
  const total = options.indices?.length ?? dataset.length;
  const ahead = options.ahead ?? 2;
  const table = normalisationTable(spec);
  const augment = options.augmentSeed !== undefined ? spec.augment : undefined;

  const pending = new Map<number, Promise<Sample>>();
  let started = 0;
  const startUpTo = (end: number) => {
    for (; started < Math.min(end, total); started++) {
      const loading = dataset.load(indexAt(started), spec);
      loading.catch(() => {}); // awaited (and rethrown) when its batch is assembled
      pending.set(started, loading);
    }
  };

  for (let first = 0; first < total; first += batchSize) {
    startUpTo(first + batchSize * (1 + ahead));
    const n = Math.min(batchSize, total - first);
    const samples: Sample[] = [];
    for (let k = first; k < first + n; k++) {
      samples.push(await pending.get(k)!);
      pending.delete(k);
    }
    const { height, width } = checkSameSize(samples, dataset, indexAt, first);
    const plane = height * width;
    const images = new Float32Array(n * spec.channels * plane);
    const labels = dataset.labels && new Int32Array(n);
    const indices = new Int32Array(n);
    for (let s = 0; s < n; s++) {
      const index = indexAt(first + s);
      indices[s] = index;
      if (labels) labels[s] = dataset.labels![index]!;
      const placement = augment
        ? randomPlacement(augment, options.augmentSeed!, options.epoch ?? 0, index)
        : NO_AUGMENT;
      writeSample(images, s * spec.channels * plane, samples[s]!, spec, table, placement);
    }
    yield { images, ...(labels && { labels }), n, shape: [n, spec.channels, height, width], indices };
  }
}

function checkSameSize(
  samples: Sample[],
  dataset: AnyDataset,
  indexAt: (k: number) => number,
  first: number,
) {
  const { height, width } = samples[0]!;
  const odd = samples.findIndex((s) => s.height !== height || s.width !== width);
  if (odd >= 0) {
    throw new UserError(
      `is ${samples[odd]!.width}x${samples[odd]!.height} but ${dataset.describe(indexAt(first))} is ${width}x${height}; ` +
        'images in a batch must have one size (give --crop, or --resize and --crop)',
      dataset.describe(indexAt(first + odd)),
    );
  }
  return { height, width };
}

/** Where a sample lands: shifted by (dx, dy) inside a zero border of `padding` pixels, maybe mirrored. */
interface Placement {
  padding: number;
  dx: number;
  dy: number;
  flip: boolean;
}

const NO_AUGMENT: Placement = { padding: 0, dx: 0, dy: 0, flip: false };

function randomPlacement(
  augment: NonNullable<PreprocessSpec['augment']>,
  seed: number,
  epoch: number,
  index: number,
): Placement {
  const random = mulberry32(mixSeed(seed, epoch, index));
  const padding = augment.cropPadding ?? 0;
  return {
    padding,
    dx: randomInt(random, 2 * padding + 1),
    dy: randomInt(random, 2 * padding + 1),
    flip: augment.horizontalFlip === true && random() < 0.5,
  };
}

/**
 * Writes one HWC u8 sample as normalised CHW float32 at `offset`. Padding is zero in pixel space, as
 * torchvision pads before ToTensor/Normalize. One table lookup per value; a grayscale sample is repeated
 * into all channels.
 */
function writeSample(
  out: Float32Array,
  offset: number,
  sample: Sample,
  spec: PreprocessSpec,
  table: Float32Array,
  { padding, dx, dy, flip }: Placement,
): void {
  const { pixels, height, width, channels: sourceChannels } = sample;
  const plane = height * width;
  for (let c = 0; c < spec.channels; c++) {
    const sourceChannel = sourceChannels === 1 ? 0 : spec.channelOrder === 'bgr' ? 2 - c : c;
    const lookup = table.subarray(c * 256, c * 256 + 256);
    const base = offset + c * plane;
    for (let y = 0; y < height; y++) {
      const sy = y + dy - padding;
      for (let x = 0; x < width; x++) {
        const sx = (flip ? width - 1 - x : x) + dx - padding;
        const inside = sy >= 0 && sy < height && sx >= 0 && sx < width;
        out[base + y * width + x] =
          lookup[inside ? pixels[(sy * width + sx) * sourceChannels + sourceChannel]! : 0]!;
      }
    }
  }
}
