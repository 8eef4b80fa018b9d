import { inflateSync } from 'node:zlib';
import { UserError } from '../errors.js';

/**
 * The stored values of a grayscale or palette PNG: class indices of a mask (VOC's palette masks, or gray ones)
 * or the levels of a map. libvips expands a palette to colours, which would lose the indices, so these files
 * are read here: 1/2/4/8/16-bit gray (with or without alpha, which is dropped) and 1/2/4/8-bit palette,
 * not interlaced. Colour PNGs are refused: a colour has no class index.
 */
export interface PngValues {
  data: Uint8Array | Uint16Array;
  width: number;
  height: number;
  /** 2^bitDepth - 1: the largest value the file can hold. */
  maxValue: number;
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

export function decodePngValues(bytes: Uint8Array, file: string, maxPixels: number): PngValues {
  const fail = (why: string): never => {
    throw new UserError(why, file);
  };
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) fail('is not a PNG file');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let width = 0;
  let height = 0;
  let depth = 0;
  let colorType = -1;
  const idat: Uint8Array[] = [];
  for (let at = 8; at + 8 <= bytes.length;) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const body = bytes.subarray(at + 8, at + 8 + length);
    if (body.length !== length) fail('is a truncated PNG file');
    if (type === 'IHDR') {
      width = view.getUint32(at + 8);
      height = view.getUint32(at + 12);
      depth = body[8]!;
      colorType = body[9]!;
      if (body[12] !== 0) fail('is an interlaced PNG; save the mask without interlacing');
    } else if (type === 'IDAT') idat.push(body);
    else if (type === 'IEND') break;
    at += 12 + length;
  }
  if (colorType === 2 || colorType === 6)
    fail('is a colour PNG; a mask must be a grayscale or palette PNG whose values are class indices');
  if (![0, 3, 4].includes(colorType) || ![1, 2, 4, 8, 16].includes(depth) || (colorType === 3 && depth > 8))
    fail(`is a PNG of a kind not read as a mask (colour type ${colorType}, ${depth}-bit)`);
  if (width === 0 || height === 0 || width * height > maxPixels)
    fail(`is a PNG of ${width}x${height} pixels, outside what is read (1 to ${maxPixels} pixels)`);
  const samples = colorType === 4 ? 2 : 1;
  const bitsPerPixel = depth * samples;
  const stride = Math.ceil((width * bitsPerPixel) / 8);
  let raw: Buffer;
  try {
    raw = inflateSync(Buffer.concat(idat), { maxOutputLength: (stride + 1) * height });
  } catch {
    return fail('has image data that does not inflate to its stated size');
  }
  if (raw.length !== (stride + 1) * height) fail('has image data that does not inflate to its stated size');
  unfilter(raw, stride, height, Math.max(1, bitsPerPixel >> 3), fail);
  const data = depth === 16 ? new Uint16Array(width * height) : new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const row = y * (stride + 1) + 1;
    for (let x = 0; x < width; x++) {
      if (depth === 16)
        data[y * width + x] = (raw[row + x * 2 * samples]! << 8) | raw[row + x * 2 * samples + 1]!;
      else if (depth === 8) data[y * width + x] = raw[row + x * samples]!;
      else {
        const bit = x * depth;
        data[y * width + x] = (raw[row + (bit >> 3)]! >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
      }
    }
  }
  return { data, width, height, maxValue: 2 ** depth - 1 };
}

/** Undoes PNG's per-row filters in place (each row: a filter byte, then `stride` bytes). */
function unfilter(
  raw: Buffer,
  stride: number,
  height: number,
  bpp: number,
  fail: (why: string) => never,
): void {
  for (let y = 0; y < height; y++) {
    const row = y * (stride + 1);
    const prev = row - (stride + 1);
    const filter = raw[row]!;
    for (let i = 1; i <= stride; i++) {
      const a = i > bpp ? raw[row + i - bpp]! : 0;
      const b = y > 0 ? raw[prev + i]! : 0;
      const c = y > 0 && i > bpp ? raw[prev + i - bpp]! : 0;
      let add: number;
      if (filter === 0) add = 0;
      else if (filter === 1) add = a;
      else if (filter === 2) add = b;
      else if (filter === 3) add = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        add = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else return fail(`has an unknown PNG row filter ${filter}`);
      raw[row + i] = (raw[row + i]! + add) & 255;
    }
  }
}
