import { readRegularFile } from '../run-files.js';
import sharp, { type Sharp } from 'sharp';
import { UserError } from '../errors.js';
import type { Sample } from './dataset.js';
import { firstLine, fsErrorReason } from './error-text.js';
import type { PreprocessSpec } from './preprocess.js';

// Parallelism comes from decoding many images at once on libuv's pool; libvips' own threads per image only add
// hand-offs (about 30 futex calls per 32x32 JPEG; 1 thread measured ~5% less CPU on CIFAR images). Its
// operation cache would only hold memory that a streaming pass never reuses. Both settings are process-wide.
sharp.concurrency(1);
sharp.cache(false);

/**
 * Largest image decoded, in pixels (sharp's limitInputPixels): 64 megapixels covers any photograph a CNN is
 * fed (they are resized to a few hundred pixels) while a hostile 20000x20000 PNG of a few MB is refused before
 * libvips allocates gigabytes for it.
 */
export const MAX_IMAGE_PIXELS = 8192 * 8192;
/** Largest image file read: far above any real photograph. */
const MAX_IMAGE_FILE_BYTES = 256 << 20;

/**
 * Decodes an image file (JPEG, PNG, WebP, …) to 8-bit HWC pixels, with the spec's channels, resize and crop.
 * The file is read synchronously, before the first await: handing libvips the bytes rather than the path
 * costs about 30% less CPU per CIFAR image (libvips' own file reading, or readFile's four thread-pool round
 * trips, cost more than the 4 system calls), and it happens while the caller queues the next batches, before
 * onnxruntime takes the main thread.
 */
export async function decodeImageFile(path: string, spec: PreprocessSpec): Promise<Sample> {
  let bytes: Buffer;
  try {
    // A hard link may point at any file outside the data set: refused, like a symbolic link out of it.
    bytes = readRegularFile(path, MAX_IMAGE_FILE_BYTES, { singleLink: true });
  } catch (e) {
    throw new UserError(`cannot read the image (${fsErrorReason(e)})`, path);
  }
  try {
    let image = sharp(bytes, { limitInputPixels: MAX_IMAGE_PIXELS });
    if (spec.resize !== undefined || spec.crop !== undefined) {
      const { width, height } = await image.metadata();
      image = resizeAndCrop(image, width, height, spec, path);
    }
    return await toSample(image, spec);
  } catch (e) {
    if (e instanceof UserError) throw e;
    const reason = firstLine(e);
    if (/pixel limit/i.test(reason))
      throw new UserError(
        `the image is larger than ${MAX_IMAGE_PIXELS.toLocaleString('en-US')} pixels; refusing to decode it`,
        path,
      );
    throw new UserError(`cannot decode the image (${reason})`, path);
  }
}

/** Applies resize, crop and grayscale conversion to raw pixels (CIFAR/IDX records); a no-op when none is asked. */
export async function transformSample(sample: Sample, spec: PreprocessSpec, name: string): Promise<Sample> {
  const toGray = spec.channels === 1 && sample.channels !== 1;
  if (spec.resize === undefined && spec.crop === undefined && !toGray) return sample;
  const { width, height, channels } = sample;
  const image = sharp(sample.pixels, { raw: { width, height, channels: channels as 1 | 3 } });
  return toSample(resizeAndCrop(image, width, height, spec, name), spec);
}

async function toSample(image: Sharp, spec: PreprocessSpec): Promise<Sample> {
  const colour =
    spec.channels === 1
      ? image.removeAlpha().toColourspace('b-w')
      : image.removeAlpha().toColourspace('srgb');
  const { data, info } = await colour.raw().toBuffer({ resolveWithObject: true });
  return { pixels: data, height: info.height, width: info.width, channels: info.channels };
}

/** torchvision's Resize(shorter side) then CenterCrop, expressed as one sharp pipeline. */
function resizeAndCrop(
  image: Sharp,
  width: number,
  height: number,
  spec: PreprocessSpec,
  name: string,
): Sharp {
  const geometry = resizeCropGeometry(width, height, spec);
  if (geometry.resized.width !== width || geometry.resized.height !== height) {
    image = image.resize(geometry.resized.width, geometry.resized.height, { fit: 'fill', kernel: 'linear' });
  }
  if (geometry.crop) {
    const { left, top, size } = geometry.crop;
    if (size > geometry.resized.width || size > geometry.resized.height) {
      throw new UserError(
        `the image (${geometry.resized.width}x${geometry.resized.height} after resizing) is smaller than the ${size}x${size} crop`,
        name,
      );
    }
    image = image.extract({ left, top, width: size, height: size });
  }
  return image;
}

export interface ResizeCropGeometry {
  resized: { width: number; height: number };
  crop?: { left: number; top: number; size: number };
}

/** The sizes torchvision computes: shorter side → `resize` (long side truncated), crop offsets rounded half-even. */
export function resizeCropGeometry(width: number, height: number, spec: PreprocessSpec): ResizeCropGeometry {
  let resized = { width, height };
  if (spec.resize !== undefined) {
    const s = spec.resize;
    resized =
      width <= height
        ? { width: s, height: Math.floor((s * height) / width) }
        : { width: Math.floor((s * width) / height), height: s };
  }
  if (spec.crop === undefined) return { resized };
  const size = spec.crop;
  return {
    resized,
    crop: {
      left: roundHalfEven((resized.width - size) / 2),
      top: roundHalfEven((resized.height - size) / 2),
      size,
    },
  };
}

/** Python's round(), which torchvision's CenterCrop uses. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
