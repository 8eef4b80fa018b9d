import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { decodePngValues } from '../src/tasks/png.js';
import { checkMaskValues, inputGeometry, planeToInput } from '../src/tasks/labels.js';
import { argmaxMask, segmentTask } from '../src/tasks/segment.js';
import type { ClassMask } from '../src/tasks/segment.js';

const mask = (rows: number[][]): ClassMask => ({
  data: Uint8Array.from(rows.flat()),
  height: rows.length,
  width: rows[0]!.length,
});

/** A PNG written byte by byte: colour type 3 (palette) or 0 (gray), one filter per row. */
function handPng(
  width: number,
  height: number,
  depth: number,
  colorType: number,
  rows: number[][],
  filters: number[],
): Buffer {
  const chunk = (type: string, body: Buffer) => {
    const out = Buffer.alloc(12 + body.length);
    out.writeUInt32BE(body.length, 0);
    out.write(type, 4, 'latin1');
    body.copy(out, 8);
    return out; // CRC left 0: the reader does not check it
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = depth;
  ihdr[9] = colorType;
  const raw = Buffer.concat(rows.map((r, y) => Buffer.from([filters[y]!, ...r])));
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    ...(colorType === 3 ? [chunk('PLTE', Buffer.from([0, 0, 0, 128, 0, 0, 0, 128, 0, 255, 255, 255]))] : []),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('segment: mIoU and pixel accuracy', () => {
  it('by hand: a 3-class 4x4 mask, with the ignore index skipped', () => {
    const target = mask([
      [0, 0, 1, 1],
      [0, 0, 1, 1],
      [2, 2, 255, 255],
      [2, 2, 2, 2],
    ]);
    const prediction = mask([
      [0, 1, 1, 1],
      [0, 0, 1, 1],
      [2, 2, 0, 0],
      [2, 2, 2, 0],
    ]);
    const metric = segmentTask.metric({ task: 'segment', classes: 3 }, false);
    metric.add(prediction, target);
    const s = metric.summary();
    // class 0: TP 3, FP 1 (pixel 3,15), FN 1 (pixel 1) -> 3/5; class 1: TP 4, FP 1 -> 4/5; class 2: TP 5, FN 1 -> 5/6
    assert.deepEqual(s.perClass, { '0': 3 / 5, '1': 4 / 5, '2': 5 / 6 });
    assert.equal(s.value, (3 / 5 + 4 / 5 + 5 / 6) / 3);
    assert.equal(s.values.pixelAccuracy, 12 / 14);
  });

  it('a class in neither target nor prediction is left out of the mean; a model against itself scores 1', () => {
    const m = mask([[0, 1, 1, 0]]);
    const metric = segmentTask.metric({ task: 'segment', classes: 5 }, true);
    metric.add(m, segmentTask.asTarget(m, { task: 'segment' }) as ClassMask);
    const s = metric.summary();
    assert.equal(s.value, 1);
    assert.equal(s.perClass!['4'], null);
  });

  it('argmax over [N, K, H, W], the first of equal scores winning', () => {
    // one image, 3 classes, 1x3 pixels
    const data = Float32Array.from([1, 0, 5, /* c1 */ 2, 0, 5, /* c2 */ 0, 0, 1]);
    assert.deepEqual(Array.from(argmaxMask({ data, dims: [1, 3, 1, 3] }, 0).data), [1, 0, 0]);
  });
});

describe('mask files', () => {
  it('palette PNGs keep their indices (sharp would expand them to colours); all five row filters', () => {
    const rows = [
      [0, 1, 2, 3],
      [3, 2, 1, 0],
      [1, 1, 3, 3],
      [2, 0, 2, 0],
      [0, 3, 0, 3],
    ];
    // filtering a row with filter f and the unfiltered data: write raw values under filter 0, and check
    // the others by encoding them here
    const encoded = rows.map((r, y) => {
      const f = y;
      const prev = y > 0 ? rows[y - 1]! : [0, 0, 0, 0];
      return r.map((v, i) => {
        const a = i > 0 ? r[i - 1]! : 0;
        const b = prev[i]!;
        const c = i > 0 ? prev[i - 1]! : 0;
        const p = a + b - c;
        const pred = [
          0,
          a,
          b,
          (a + b) >> 1,
          Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c)
            ? a
            : Math.abs(p - b) <= Math.abs(p - c)
              ? b
              : c,
        ][f]!;
        return (v - pred + 256) & 255;
      });
    });
    const png = handPng(4, 5, 8, 3, encoded, [0, 1, 2, 3, 4]);
    const decoded = decodePngValues(png, 'm.png', 1 << 20);
    assert.deepEqual(Array.from(decoded.data), rows.flat());
    const twoBit = handPng(4, 1, 2, 3, [[0b00011011]], [0]);
    assert.deepEqual(Array.from(decodePngValues(twoBit, 'm.png', 1 << 20).data), [0, 1, 2, 3]);
  });

  it('gray PNGs written by sharp; colour PNGs refused in one line', async () => {
    const gray = await sharp(Buffer.from([0, 1, 2, 255]), { raw: { width: 2, height: 2, channels: 1 } })
      .toColourspace('b-w')
      .png()
      .toBuffer();
    assert.deepEqual(Array.from(decodePngValues(gray, 'g.png', 1 << 20).data), [0, 1, 2, 255]);
    const rgb = await sharp(Buffer.alloc(12, 7), { raw: { width: 2, height: 2, channels: 3 } })
      .png()
      .toBuffer();
    assert.throws(() => decodePngValues(rgb, 'c.png', 1 << 20), /c\.png: is a colour PNG/);
    assert.throws(() => decodePngValues(Buffer.from('not a png'), 'x.png', 1 << 20), /is not a PNG/);
  });

  it('a class index out of range names the file and pixel; 255 is the ignore index', () => {
    const m = mask([[0, 255, 4]]);
    assert.throws(
      () => checkMaskValues(m, 3, 255, 'a.png'),
      /^UserError: a\.png: pixel \(2, 0\) has class 4, out of range/,
    );
    assert.doesNotThrow(() => checkMaskValues(mask([[0, 255, 2]]), 3, 255, 'a.png'));
  });

  it('masks follow the resize and centre crop by nearest neighbour', () => {
    // 4x2 image, shorter side 2 -> resize 4 gives 8x4, crop 4 takes columns 2..5
    const g = inputGeometry(4, 2, {
      channels: 3,
      channelOrder: 'rgb',
      scale: 255,
      mean: [0, 0, 0],
      std: [1, 1, 1],
      resize: 4,
      crop: 4,
    });
    assert.deepEqual([g.width, g.height, g.scaleX, g.offsetX], [4, 4, 2, -2]);
    const plane = planeToInput(Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]), g, (n) => new Uint8Array(n), 255);
    assert.deepEqual(Array.from(plane.data), [1, 1, 2, 2, 1, 1, 2, 2, 5, 5, 6, 6, 5, 5, 6, 6]);
  });
});
