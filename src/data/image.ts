import { readRegularFile } from '../run-files.js';
import sharp, { type Sharp } from 'sharp';
import { UserError } from '../errors.js';
import type { Sample } from './dataset.js';
import { firstLine, fsErrorReason } from './error-text.js';
import { LETTERBOX_PAD, type PreprocessSpec } from './preprocess.js';

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
    const image = sharp(bytes, { limitInputPixels: MAX_IMAGE_PIXELS });
    if (spec.resize === undefined && spec.crop === undefined) return await toSample(image, spec);
    const { width, height } = await image.metadata();
    return await transformed(image, width, height, spec, path);
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
  return transformed(image, width, height, spec, name);
}

/** Resize and crop in sharp, then the letterbox's border, if any, added to the decoded pixels. */
async function transformed(
  image: Sharp,
  width: number,
  height: number,
  spec: PreprocessSpec,
  name: string,
): Promise<Sample> {
  const geometry = resizeCropGeometry(width, height, spec, name);
  const sample = await toSample(resizeAndCrop(image, width, height, geometry, name), spec);
  return geometry.pad ? padSample(sample, geometry.pad, LETTERBOX_PAD) : sample;
}

/** The sample inside a border of `value` (every channel), as cv2.copyMakeBorder(BORDER_CONSTANT) adds it. */
export function padSample(sample: Sample, pad: Padding, value: number): Sample {
  const { pixels, height, width, channels } = sample;
  const outWidth = width + pad.left + pad.right;
  const outHeight = height + pad.top + pad.bottom;
  const out = new Uint8Array(outWidth * outHeight * channels).fill(value);
  const row = width * channels;
  for (let y = 0; y < height; y++)
    out.set(pixels.subarray(y * row, (y + 1) * row), ((y + pad.top) * outWidth + pad.left) * channels);
  return { pixels: out, height: outHeight, width: outWidth, channels };
}

async function toSample(image: Sharp, spec: PreprocessSpec): Promise<Sample> {
  const colour =
    spec.channels === 1
      ? image.removeAlpha().toColourspace('b-w')
      : image.removeAlpha().toColourspace('srgb');
  const { data, info } = await colour.raw().toBuffer({ resolveWithObject: true });
  return { pixels: data, height: info.height, width: info.width, channels: info.channels };
}

/** torchvision's Resize(shorter side) then CenterCrop (or the letterbox's scaling), as one sharp pipeline. */
function resizeAndCrop(
  image: Sharp,
  width: number,
  height: number,
  geometry: ResizeCropGeometry,
  name: string,
): Sharp {
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

export interface Padding {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

export interface ResizeCropGeometry {
  resized: { width: number; height: number };
  crop?: { left: number; top: number; size: number };
  /** `letterbox`: the border added around the resized image, in pixels. */
  pad?: Padding;
}

/**
 * The sizes torchvision computes: shorter side → `resize` (long side truncated), crop offsets rounded half-even;
 * for `letterbox` and `stretch`, ultralytics' sizes (letterboxGeometry), fitted to `spec.size`.
 */
export function resizeCropGeometry(
  width: number,
  height: number,
  spec: PreprocessSpec,
  name?: string,
): ResizeCropGeometry {
  if (typeof spec.resize === 'string') {
    if (!spec.size)
      throw new UserError(
        `resize '${spec.resize}' needs the model's input height and width (size [H, W] in the spec, or a model with a fixed input shape)`,
        name,
      );
    const [h, w] = spec.size;
    if (spec.resize === 'stretch') return { resized: { width: w, height: h } };
    return letterboxGeometry(width, height, h, w);
  }
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

/**
 * ultralytics' LetterBox (auto=False, scaleup=True, center=True) for an image of width x height into h x w:
 * r = min(h / height, w / width); the image is resized to (round(width r), round(height r)); the remaining
 * (dw, dh) are halved, and top/left = round(dh/2 - 0.1), bottom/right = round(dh/2 + 0.1), with Python's round.
 */
export function letterboxGeometry(width: number, height: number, h: number, w: number): ResizeCropGeometry {
  const r = Math.min(h / height, w / width);
  // At least a pixel: ultralytics would fail on a 1-pixel-high panorama that rounds to 0.
  const resized = {
    width: Math.max(1, roundHalfEven(width * r)),
    height: Math.max(1, roundHalfEven(height * r)),
  };
  const dw = (w - resized.width) / 2;
  const dh = (h - resized.height) / 2;
  return {
    resized,
    // + 0 turns round(-0.1)'s -0 into 0.
    pad: {
      top: roundHalfEven(dh - 0.1) + 0,
      bottom: roundHalfEven(dh + 0.1) + 0,
      left: roundHalfEven(dw - 0.1) + 0,
      right: roundHalfEven(dw + 0.1) + 0,
    },
  };
}

/** Python's round(), which torchvision's CenterCrop uses. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
