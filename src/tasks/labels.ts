import sharp from 'sharp';
import { fsErrorReason } from '../data/error-text.js';
import { MAX_IMAGE_PIXELS, resizeCropGeometry } from '../data/image.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { UserError } from '../errors.js';
import { readRegularFile } from '../run-files.js';
import { decodePngValues } from './png.js';
import type { Box, GroundTruthBox, Plane } from './types.js';

/** One line of a YOLO label file: class, then the box centre and size as fractions of the image. */
export interface YoloLabel {
  cls: number;
  cx: number;
  cy: number;
  w: number;
  h: number;
}

const MAX_LABEL_BYTES = 16 << 20;

/**
 * Reads a YOLO label file (`class cx cy w h` per line, normalised; blank lines skipped). A class outside
 * 0..classes-1, a value outside [0, 1] (the rule ultralytics checks), or a line that is not five numbers is one
 * line naming the file and line; the line's text is never quoted.
 */
export function readYoloLabels(file: string, classes: number): YoloLabel[] {
  let text: string;
  try {
    text = readRegularFile(file, MAX_LABEL_BYTES, { singleLink: true }).toString('utf8');
  } catch (e) {
    throw new UserError(`cannot read the label file (${fsErrorReason(e)})`, file);
  }
  const out: YoloLabel[] = [];
  text.split('\n').forEach((raw, i) => {
    const fields = raw.trim().split(/\s+/).filter(Boolean);
    if (fields.length === 0) return;
    const fail = (why: string): never => {
      throw new UserError(`line ${i + 1}: ${why}`, file);
    };
    if (fields.length !== 5)
      fail(`expected 5 numbers (class cx cy w h), found ${fields.length} fields; polygons are not read`);
    const v = fields.map(Number);
    const bad = v.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) fail(`field ${bad + 1} is not a number`);
    const [cls, cx, cy, w, h] = v as [number, number, number, number, number];
    if (!Number.isInteger(cls) || cls < 0 || cls >= classes)
      fail(`class ${cls} is out of range: the model has ${classes} classes (0 to ${classes - 1})`);
    if ([cx, cy, w, h].some((x) => x < 0 || x > 1))
      fail('the box is outside [0, 1]: cx cy w h must be fractions of the image width and height');
    out.push({ cls, cx, cy, w, h });
  });
  return out;
}

/**
 * Where the model input's pixels come from in the original image: input x = x_image * scaleX + offsetX (and
 * likewise y), for the spec's resize, centre crop or letterbox.
 */
export interface InputGeometry {
  /** The original image's size. */
  imageWidth: number;
  imageHeight: number;
  scaleX: number;
  scaleY: number;
  offsetX: number;
  offsetY: number;
  /** The model input's size. */
  width: number;
  height: number;
}

export function inputGeometry(imageWidth: number, imageHeight: number, spec: PreprocessSpec): InputGeometry {
  const g = resizeCropGeometry(imageWidth, imageHeight, spec) as ReturnType<typeof resizeCropGeometry> & {
    pad?: { top: number; bottom: number; left: number; right: number };
  };
  const crop = g.crop;
  const pad = g.pad ?? { top: 0, bottom: 0, left: 0, right: 0 };
  return {
    imageWidth,
    imageHeight,
    scaleX: g.resized.width / imageWidth,
    scaleY: g.resized.height / imageHeight,
    offsetX: pad.left - (crop?.left ?? 0),
    offsetY: pad.top - (crop?.top ?? 0),
    width: crop ? crop.size : g.resized.width + pad.left + pad.right,
    height: crop ? crop.size : g.resized.height + pad.top + pad.bottom,
  };
}

/** The size of an image file, read from its header (the same bytes the decoder reads). */
export async function imageSize(file: string): Promise<{ width: number; height: number }> {
  try {
    const bytes = readRegularFile(file, 256 << 20, { singleLink: true });
    const { width, height } = await sharp(bytes, { limitInputPixels: MAX_IMAGE_PIXELS }).metadata();
    return { width, height };
  } catch (e) {
    throw new UserError(`cannot read the image's size (${fsErrorReason(e)})`, file);
  }
}

/**
 * YOLO labels as corner boxes in model-input pixels, clipped to the input (a centre crop can cut a box; a box
 * left with no area inside the input is dropped, as it cannot be seen).
 */
export function labelsToInput(labels: readonly YoloLabel[], g: InputGeometry): GroundTruthBox[] {
  const out: GroundTruthBox[] = [];
  for (const l of labels) {
    const x = (v: number) => Math.min(g.width, Math.max(0, v * g.imageWidth * g.scaleX + g.offsetX));
    const y = (v: number) => Math.min(g.height, Math.max(0, v * g.imageHeight * g.scaleY + g.offsetY));
    const box: Box = [x(l.cx - l.w / 2), y(l.cy - l.h / 2), x(l.cx + l.w / 2), y(l.cy + l.h / 2)];
    if (box[2] > box[0] && box[3] > box[1]) out.push({ box, cls: l.cls });
  }
  return out;
}

/** A mask or map PNG's stored values (see png.ts for the kinds read). */
export function readLabelPng(file: string): Plane<Uint8Array | Uint16Array> & { maxValue: number } {
  let bytes: Buffer;
  try {
    bytes = readRegularFile(file, 256 << 20, { singleLink: true });
  } catch (e) {
    throw new UserError(`cannot read the mask (${fsErrorReason(e)})`, file);
  }
  return decodePngValues(bytes, file, MAX_IMAGE_PIXELS);
}

/**
 * A per-pixel label of the original image resampled onto the model input: nearest neighbour through the spec's
 * resize, crop or letterbox (pixel centres, as PIL's NEAREST); input pixels outside the image (the letterbox's
 * border) get `outside`.
 */
export function planeToInput<T extends Uint8Array | Uint16Array | Float32Array>(
  values: ArrayLike<number>,
  g: InputGeometry,
  make: (n: number) => T,
  outside: number,
): Plane<T> {
  const data = make(g.width * g.height);
  const xs = Int32Array.from({ length: g.width }, (_, x) =>
    sourceIndex(x, g.offsetX, g.scaleX, g.imageWidth),
  );
  for (let y = 0; y < g.height; y++) {
    const sy = sourceIndex(y, g.offsetY, g.scaleY, g.imageHeight);
    for (let x = 0; x < g.width; x++) {
      const sx = xs[x]!;
      data[y * g.width + x] = sy < 0 || sx < 0 ? outside : values[sy * g.imageWidth + sx]!;
    }
  }
  return { data, height: g.height, width: g.width };
}

function sourceIndex(at: number, offset: number, scale: number, size: number): number {
  const resized = at - offset;
  if (resized < 0 || resized >= Math.round(size * scale)) return -1;
  return Math.min(size - 1, Math.floor((resized + 0.5) / scale));
}

/** Checks a class mask against the class count; `ignore` marks pixels not scored. */
export function checkMaskValues(
  mask: Plane<Uint8Array | Uint16Array>,
  classes: number,
  ignore: number,
  file: string,
) {
  for (let i = 0; i < mask.data.length; i++) {
    const v = mask.data[i]!;
    if (v >= classes && v !== ignore)
      throw new UserError(
        `pixel (${i % mask.width}, ${Math.floor(i / mask.width)}) has class ${v}, out of range: the model has ` +
          `${classes} classes (0 to ${classes - 1}; ${ignore} marks pixels not scored)`,
        file,
      );
  }
}
