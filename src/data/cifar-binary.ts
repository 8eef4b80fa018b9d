import { readFile, readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { UserError } from '../errors.js';
import { fsErrorReason } from './error-text.js';
import type { Dataset, Sample } from './dataset.js';
import { transformSample } from './image.js';
import type { PreprocessSpec } from './preprocess.js';

const SIDE = 32;
const PIXELS = SIDE * SIDE * 3;

/** The two binary formats: CIFAR-10 records are label + pixels, CIFAR-100 records coarse + fine label + pixels. */
const FORMATS = {
  cifar10: {
    labelBytes: 1,
    train: /^data_batch_\d+\.bin$/,
    test: /^test_batch\.bin$/,
    names: 'batches.meta.txt',
  },
  cifar100: { labelBytes: 2, train: /^train\.bin$/, test: /^test\.bin$/, names: 'fine_label_names.txt' },
} as const;

export type Split = 'train' | 'test';

/** True when the folder holds CIFAR binary batches. */
export function looksLikeCifarFolder(names: readonly string[]): boolean {
  return names.some(
    (n) => FORMATS.cifar10.test.test(n) || FORMATS.cifar10.train.test(n) || /^(train|test)\.bin$/.test(n),
  );
}

/**
 * CIFAR-10/100 "binary version" batches. The files are small (≤ 154 MB for a split) and hold labels
 * interleaved with pixels, so they are read whole; pixels are channel-planar (R, G, B planes of 32x32).
 */
export class CifarBinaryDataset implements Dataset {
  readonly kind = 'cifar-binary';
  readonly length: number;

  private constructor(
    readonly path: string,
    readonly classNames: readonly string[],
    readonly labels: Int32Array,
    private readonly files: readonly { name: string; bytes: Buffer; first: number }[],
    private readonly recordBytes: number,
  ) {
    this.length = labels.length;
  }

  /** Opens the batches of one split in a folder, or a single `.bin` file. */
  static async open(path: string, split: Split, isFile = false): Promise<CifarBinaryDataset> {
    const folder = isFile ? dirname(path) : path;
    const names = isFile ? [basename(path)] : (await readdir(folder)).sort(byBatchNumber);
    const format = names.some((n) => /^(train|test)\.bin$/.test(n)) ? FORMATS.cifar100 : FORMATS.cifar10;
    const chosen = isFile ? names : names.filter((n) => format[split].test(n));
    if (chosen.length === 0) throw new UserError(`has no CIFAR ${split} batches`, folder);

    const recordBytes = format.labelBytes + PIXELS;
    const files: { name: string; bytes: Buffer; first: number }[] = [];
    let total = 0;
    for (const name of chosen) {
      const file = join(folder, name);
      const bytes = await readFile(file).catch((e: NodeJS.ErrnoException) => {
        throw new UserError(`cannot read the CIFAR batch (${fsErrorReason(e)})`, file);
      });
      if (bytes.length === 0 || bytes.length % recordBytes !== 0) {
        throw new UserError(
          `is not a CIFAR binary batch (${bytes.length} bytes is not a multiple of ${recordBytes})`,
          file,
        );
      }
      files.push({ name: file, bytes, first: total });
      total += bytes.length / recordBytes;
    }

    const labels = new Int32Array(total);
    let maxLabel = 0;
    for (const { bytes, first } of files) {
      for (let r = 0; r * recordBytes < bytes.length; r++) {
        // CIFAR-100 puts the coarse label first; the fine label is the one models are trained on.
        const label = bytes[r * recordBytes + format.labelBytes - 1]!;
        labels[first + r] = label;
        maxLabel = Math.max(maxLabel, label);
      }
    }
    const classNames = await readClassNames(join(folder, format.names), maxLabel + 1);
    return new CifarBinaryDataset(path, classNames, labels, files, recordBytes);
  }

  describe(index: number): string {
    const file = this.fileOf(index);
    return `${file.name}#${index - file.first}`;
  }

  load(index: number, spec: PreprocessSpec): Promise<Sample> {
    const file = this.fileOf(index);
    const offset = (index - file.first) * this.recordBytes + this.recordBytes - PIXELS;
    const planar = file.bytes.subarray(offset, offset + PIXELS);
    const pixels = new Uint8Array(PIXELS);
    const plane = SIDE * SIDE;
    for (let p = 0; p < plane; p++) {
      pixels[p * 3] = planar[p]!;
      pixels[p * 3 + 1] = planar[plane + p]!;
      pixels[p * 3 + 2] = planar[2 * plane + p]!;
    }
    return transformSample({ pixels, height: SIDE, width: SIDE, channels: 3 }, spec, this.describe(index));
  }

  private fileOf(index: number) {
    let i = this.files.length - 1;
    while (this.files[i]!.first > index) i--;
    return this.files[i]!;
  }
}

/** data_batch_2 before data_batch_10, so the sample order is the release order. */
function byBatchNumber(a: string, b: string): number {
  const na = Number(/(\d+)\.bin$/.exec(a)?.[1] ?? 0);
  const nb = Number(/(\d+)\.bin$/.exec(b)?.[1] ?? 0);
  return na - nb || (a < b ? -1 : a > b ? 1 : 0);
}

/** Class names from the release's text file; numbers when it is absent. */
async function readClassNames(file: string, count: number): Promise<string[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const names = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return names.length >= count ? names : Array.from({ length: count }, (_, i) => String(i));
}
