import { createReadStream } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createGunzip, gunzipSync } from 'node:zlib';
import { UserError } from '../errors.js';
import { firstLine, fsErrorReason } from './error-text.js';
import type { Dataset, Sample } from './dataset.js';
import { transformSample } from './image.js';
import type { PreprocessSpec } from './preprocess.js';
import type { Split } from './cifar-binary.js';

const FASHION_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

/** `train-images-idx3-ubyte.gz`, `t10k-images.idx3-ubyte`, … (both spellings are in circulation). */
const IMAGES_FILE = /^(train|t10k)-images[.-]idx3-ubyte(\.gz)?$/;

export function looksLikeIdxFolder(names: readonly string[]): boolean {
  return names.some((n) => IMAGES_FILE.test(n));
}

/** A parsed IDX file: unsigned-byte data with its dimensions. */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/**
 * Most bytes of IDX data adapruner reads from one file (after decompression): MNIST-style sets are tens of
 * megabytes (Fashion-MNIST's training images 47 MB), and a small gzip file can expand to gigabytes.
 */
export const MAX_IDX_BYTES = 1 << 30;

/** Parses an IDX file (gzip-compressed or raw); only the unsigned-byte type that MNIST-style data uses. */
export function parseIdx(bytes: Uint8Array, name: string): IdxArray {
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes, { maxOutputLength: MAX_IDX_BYTES + (1 << 16) });
    } catch (e) {
      throw new UserError(
        `is not valid gzip, or expands past ${MAX_IDX_BYTES} bytes (${firstLine(e)})`,
        name,
      );
    }
  }
  const { dims, start, size } = parseIdxHeader(bytes, name);
  if (bytes.length - start !== size) {
    throw new UserError(
      `IDX header promises ${size} bytes of data (${dims.join('x')}) but the file has ${bytes.length - start}`,
      name,
    );
  }
  return { dims, data: bytes.subarray(start) };
}

/** MNIST-style IDX image + label files. Both are read whole (47 MB for Fashion-MNIST's training images). */
export class IdxDataset implements Dataset {
  readonly kind = 'idx';
  readonly length: number;
  private readonly height: number;
  private readonly width: number;

  private constructor(
    readonly path: string,
    readonly classNames: readonly string[],
    readonly labels: Int32Array,
    private readonly images: IdxArray,
    private readonly imagesFile: string,
  ) {
    this.length = labels.length;
    [, this.height, this.width] = images.dims as [number, number, number];
  }

  /** Opens a split from a folder, or the images file named directly (its labels file is found beside it). */
  static async open(path: string, split: Split, isFile = false): Promise<IdxDataset> {
    const folder = isFile ? dirname(path) : path;
    const names = await readdir(folder);
    const prefix = split === 'test' ? 't10k' : 'train';
    const imagesName = isFile ? basename(path) : names.find((n) => IMAGES_FILE.exec(n)?.[1] === prefix);
    if (!imagesName)
      throw new UserError(`has no ${prefix}-images-idx3-ubyte file for the ${split} split`, folder);
    const labelsName = names.find(
      (n) => n === imagesName.replace('images', 'labels').replace('idx3', 'idx1'),
    );
    if (!labelsName)
      throw new UserError('has no matching labels file (…-labels-idx1-ubyte)', join(folder, imagesName));

    const imagesFile = join(folder, imagesName);
    const labelsFile = join(folder, labelsName);
    const images = await readIdx(imagesFile);
    const labelArray = await readIdx(labelsFile);
    if (images.dims.length !== 3)
      throw new UserError(`expected N x H x W images, found ${images.dims.join('x')}`, imagesFile);
    if (labelArray.dims.length !== 1 || labelArray.dims[0] !== images.dims[0]) {
      throw new UserError(`has ${labelArray.dims.join('x')} labels for ${images.dims[0]} images`, labelsFile);
    }
    const labels = Int32Array.from(labelArray.data);
    const classCount = labels.reduce((m, l) => Math.max(m, l), 0) + 1;
    const classNames =
      /fashion/i.test(folder) && classCount === FASHION_CLASSES.length
        ? FASHION_CLASSES
        : Array.from({ length: classCount }, (_, i) => String(i));
    return new IdxDataset(path, classNames, labels, images, imagesFile);
  }

  describe(index: number): string {
    return `${this.imagesFile}#${index}`;
  }

  load(index: number, spec: PreprocessSpec): Promise<Sample> {
    const size = this.height * this.width;
    const pixels = this.images.data.slice(index * size, (index + 1) * size);
    return transformSample(
      { pixels, height: this.height, width: this.width, channels: 1 },
      spec,
      this.describe(index),
    );
  }
}

/**
 * Reads an IDX file, decompressing a gzip one as a stream: the header says how many bytes follow, the data is
 * refused past MAX_IDX_BYTES, and decompression stops at the first byte beyond what the header promised, so a
 * small file that expands to gigabytes costs no more memory than its header allows.
 */
export async function readIdx(file: string): Promise<IdxArray> {
  let head: Buffer;
  try {
    const fh = await open(file, 'r');
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new UserError('is not a regular file', file);
      head = Buffer.alloc(2);
      await fh.read(head, 0, 2, 0);
      if (!(head[0] === 0x1f && head[1] === 0x8b)) {
        const header = Buffer.alloc(Math.min(st.size, 4 + 4 * 255));
        await fh.read(header, 0, header.length, 0);
        const { dims, start, size } = parseIdxHeader(header, file);
        if (st.size - start !== size)
          throw new UserError(
            `IDX header promises ${size} bytes of data (${dims.join('x')}) but the file has ${st.size - start}`,
            file,
          );
        const data = Buffer.alloc(size);
        for (let at = 0; at < size;) {
          const { bytesRead } = await fh.read(data, at, Math.min(size - at, 1 << 26), start + at);
          if (bytesRead === 0) throw new UserError('the file shrank while it was read', file);
          at += bytesRead;
        }
        return { dims, data };
      }
    } finally {
      await fh.close();
    }
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`cannot read the file (${fsErrorReason(e)})`, file);
  }
  return readGzipIdx(file);
}

/** The dims, data offset and data size an IDX header gives, refused past MAX_IDX_BYTES. */
function parseIdxHeader(bytes: Uint8Array, name: string): { dims: number[]; start: number; size: number } {
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0)
    throw new UserError('is not an IDX file (bad magic number)', name);
  if (bytes[2] !== 0x08)
    throw new UserError(
      `IDX data type 0x${bytes[2]!.toString(16)} is not supported (only unsigned bytes)`,
      name,
    );
  const rank = bytes[3]!;
  if (bytes.length < 4 + 4 * rank) throw new UserError('IDX header is truncated', name);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const size = dims.reduce((a, b) => a * b, 1);
  if (size > MAX_IDX_BYTES)
    throw new UserError(
      `IDX header promises ${size} bytes of data (${dims.join('x')}), over the ${MAX_IDX_BYTES}-byte limit`,
      name,
    );
  return { dims, start: 4 + 4 * rank, size };
}

/** A gzip IDX file, decompressed chunk by chunk into a buffer of exactly the size its header gives. */
async function readGzipIdx(file: string): Promise<IdxArray> {
  const gunzip = createReadStream(file).pipe(createGunzip());
  let header = Buffer.alloc(0);
  let parsed: ReturnType<typeof parseIdxHeader> | undefined;
  let data: Buffer | undefined;
  let filled = 0;
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      let piece = chunk;
      if (!parsed) {
        header = Buffer.concat([header, piece]);
        if (header.length < 4 || header.length < 4 + 4 * header[3]!) {
          if (header.length > 4 + 4 * 255) parseIdxHeader(header, file);
          continue;
        }
        parsed = parseIdxHeader(header, file);
        data = Buffer.alloc(parsed.size);
        piece = header.subarray(parsed.start);
      }
      if (filled + piece.length > data!.length)
        throw new UserError(
          `IDX header promises ${parsed.size} bytes of data (${parsed.dims.join('x')}) but the file holds more`,
          file,
        );
      piece.copy(data!, filled);
      filled += piece.length;
    }
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`is not valid gzip (${firstLine(e)})`, file);
  } finally {
    gunzip.destroy();
  }
  if (!parsed) parseIdxHeader(header, file);
  if (filled !== parsed!.size)
    throw new UserError(
      `IDX header promises ${parsed!.size} bytes of data (${parsed!.dims.join('x')}) but the file has ${filled}`,
      file,
    );
  return { dims: parsed!.dims, data: data! };
}
