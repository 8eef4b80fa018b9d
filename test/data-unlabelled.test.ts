import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { batches, type ImageBatch } from '../src/data/batches.js';
import { describeDataset, type AnyDataset } from '../src/data/dataset.js';
import { letterboxGeometry } from '../src/data/image.js';
import { openDataset } from '../src/data/open.js';
import { PRESETS, resolveSpec, specForInput, type PreprocessSpec } from '../src/data/preprocess.js';
import { tmpDir } from './helpers.js';

/** A 3-channel image whose pixel values are distinct and known: v(y, x, c). */
function knownPixels(height: number, width: number, seed: number): Uint8Array {
  const pixels = new Uint8Array(height * width * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (seed * 37 + i * 7) % 256;
  return pixels;
}

async function writePng(file: string, pixels: Uint8Array, width: number, height: number): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp(pixels, { raw: { width, height, channels: 3 } })
    .png()
    .toFile(file);
}

async function collect(dataset: AnyDataset, spec: PreprocessSpec): Promise<ImageBatch[]> {
  const out: ImageBatch[] = [];
  for await (const b of batches(dataset, { spec, batchSize: 8 })) out.push(b);
  return out;
}

/** Three 4x3 PNGs directly in a folder (plus a text file), pixels known. */
async function flatFolder(root: string): Promise<Map<string, Uint8Array>> {
  const images = new Map<string, Uint8Array>();
  for (const [k, name] of ['b.png', 'a.png', 'C.png'].entries()) {
    const pixels = knownPixels(3, 4, k);
    await writePng(path.join(root, name), pixels, 4, 3);
    images.set(name, pixels);
  }
  fs.writeFileSync(path.join(root, 'README.txt'), 'not an image');
  return images;
}

const RAW: PreprocessSpec = { channels: 3, channelOrder: 'rgb', scale: 1, mean: [0, 0, 0], std: [1, 1, 1] };

describe('unlabelled data: a folder of images, a .tar of one, a list file', () => {
  it('a folder with images directly inside is unlabelled: sorted files, no labels, exact pixels', async () => {
    const root = tmpDir('adapruner-unlabelled-');
    const images = await flatFolder(root);
    const data = await openDataset(root, { labels: 'optional' });
    assert.equal(data.kind, 'unlabelled');
    assert.equal(data.labelled, false);
    assert.equal(data.labels, undefined);
    assert.deepEqual(describeDataset(data), { kind: 'unlabelled', path: root, samples: 3, classes: null });
    assert.deepEqual(
      Array.from({ length: 3 }, (_, i) => path.basename(data.describe(i))),
      ['C.png', 'a.png', 'b.png'],
    );
    const [batch] = await collect(data, RAW);
    assert.equal(batch!.labels, undefined);
    assert.deepEqual(batch!.shape, [3, 3, 3, 4]);
    const a = images.get('a.png')!;
    // Sample 1 is a.png; NCHW: channel c of pixel (y, x) is at c*12 + y*4 + x.
    for (let y = 0; y < 3; y++)
      for (let x = 0; x < 4; x++)
        for (let c = 0; c < 3; c++)
          assert.equal(batch!.images[36 + c * 12 + y * 4 + x], a[(y * 4 + x) * 3 + c]);
  });

  it('refuses an unlabelled set where labels are required, in one line', async () => {
    const root = tmpDir('adapruner-unlabelled-req-');
    await flatFolder(root);
    await assert.rejects(openDataset(root), (e: Error) => {
      assert.match(e.message, /: this data set has no labels; this command needs labelled images/);
      assert.ok(!e.message.includes('\n'));
      return true;
    });
  });

  it('a .tar of the folder (with or without its root folder) and a lone subfolder of images are unlabelled', async () => {
    const root = tmpDir('adapruner-unlabelled-tar-');
    const lone = path.join(root, 'lone');
    await flatFolder(path.join(lone, 'imgs'));
    fs.writeFileSync(path.join(lone, 'LICENSE'), 'a file beside the lone folder');
    const wrapped = path.join(root, 'wrapped.tar');
    const flat = path.join(root, 'flat.tar');
    execFileSync('tar', ['-cf', wrapped, '-C', lone, 'imgs']);
    execFileSync('tar', ['-cf', flat, '-C', path.join(lone, 'imgs'), '.']);
    for (const p of [wrapped, flat, lone]) {
      const data = await openDataset(p, { labels: 'optional' });
      assert.equal(data.kind, 'unlabelled', p);
      assert.equal(data.length, 3, p);
    }
  });

  it('a list file: paths relative to it, in its order, blank lines and CRLF tolerated; labelled folders still labelled', async () => {
    const root = tmpDir('adapruner-unlabelled-list-');
    await flatFolder(path.join(root, 'imgs'));
    await writePng(path.join(root, 'deep', 'er', 'z.png'), knownPixels(3, 4, 9), 4, 3);
    const list = path.join(root, 'list.txt');
    fs.writeFileSync(list, 'imgs/b.png\r\n\r\n  deep/er/z.png\nimgs/../imgs/a.png\n');
    const data = await openDataset(list, { labels: 'optional' });
    assert.equal(data.kind, 'unlabelled');
    assert.equal(data.path, list);
    assert.deepEqual(
      Array.from({ length: data.length }, (_, i) => path.relative(root, data.describe(i))),
      ['imgs/b.png', 'deep/er/z.png', 'imgs/a.png'],
    );
    const [batch] = await collect(data, RAW);
    assert.equal(batch!.n, 3);
    // Two class folders are a labelled set, as before.
    fs.mkdirSync(path.join(root, 'cls', 'x'), { recursive: true });
    fs.cpSync(path.join(root, 'imgs'), path.join(root, 'cls', 'y'), { recursive: true });
    await writePng(path.join(root, 'cls', 'x', 'q.png'), knownPixels(3, 4, 1), 4, 3);
    const labelled = await openDataset(path.join(root, 'cls'));
    assert.deepEqual([labelled.kind, [...labelled.labels]], ['image-folder', [0, 1, 1, 1]]);
  });

  it('bad input gets one line naming the file and line, never quoting the list', async () => {
    const root = tmpDir('adapruner-unlabelled-bad-');
    await flatFolder(path.join(root, 'imgs'));
    fs.mkdirSync(path.join(root, 'empty'));
    await assert.rejects(openDataset(path.join(root, 'empty')), /empty: has no images: expected image files/);
    fs.mkdirSync(path.join(root, 'mixed', 'cat'), { recursive: true });
    await writePng(path.join(root, 'mixed', 'top.png'), knownPixels(3, 4, 0), 4, 3);
    await writePng(path.join(root, 'mixed', 'cat', 'c.png'), knownPixels(3, 4, 0), 4, 3);
    await assert.rejects(
      openDataset(path.join(root, 'mixed'), { labels: 'optional' }),
      /mixed: mixes images directly inside with a subfolder of images \(cat\)/,
    );
    const outside = path.join(root, 'outside.png');
    await writePng(outside, knownPixels(3, 4, 0), 4, 3);
    const lists = path.join(root, 'lists');
    fs.mkdirSync(lists);
    fs.cpSync(path.join(root, 'imgs'), path.join(lists, 'imgs'), { recursive: true });
    fs.symlinkSync(outside, path.join(lists, 'link.png'));
    fs.linkSync(outside, path.join(lists, 'hard.png'));
    const cases: [string, RegExp][] = [
      ['imgs/a.png\nimgs/missing.png\n', /line 2: cannot read the image it names \(no such file/],
      ['imgs/a.png\nimgs/README.txt\n', /line 2: names no image file/],
      [`${outside}\n`, /line 1: an absolute path; write paths relative to the list file/],
      ['../outside.png\n', /line 1: names a file outside the list's folder/],
      ['link.png\n', /line 1: names a file outside the list's folder/],
      ['hard.png\n', /line 1: names a hard link \(the file has 2 names\)/],
      ['\n\n', /the list names no images/],
      ['imgs\0.png\n', /is not a text list of image paths/],
    ];
    for (const [k, [text, expected]] of cases.entries()) {
      const list = path.join(lists, `l${k}.txt`);
      fs.writeFileSync(list, text);
      await assert.rejects(openDataset(list, { labels: 'optional' }), (e: Error) => {
        assert.match(e.message, expected);
        assert.ok(e.message.startsWith(`${list}: `), e.message);
        assert.ok(!e.message.includes('missing.png') && !e.message.includes('README'), e.message);
        return true;
      });
    }
    // A file named .png that is no image is refused when decoded, naming it.
    fs.writeFileSync(path.join(lists, 'fake.png'), 'not an image');
    fs.writeFileSync(path.join(lists, 'fake.txt'), 'fake.png\n');
    const fake = await openDataset(path.join(lists, 'fake.txt'), { labels: 'optional' });
    await assert.rejects(collect(fake, RAW), /fake\.png: cannot decode the image/);
  });
});

describe('resize to the model input: letterbox (ultralytics) and stretch', () => {
  it("letterbox sizes and pads are ultralytics' LetterBox, bit for bit (Python round, -0.1/+0.1 split)", () => {
    // [w, h, H, W] -> [new w, new h, top, bottom, left, right], computed with ultralytics' formula in Python 3.
    const table = [
      [1280, 720, 640, 640, 640, 360, 140, 140, 0, 0],
      [500, 375, 640, 640, 640, 480, 80, 80, 0, 0],
      [333, 500, 640, 640, 426, 640, 0, 0, 107, 107],
      [5, 4, 2, 100, 2, 2, 0, 0, 49, 49], // 5 x 0.5 = 2.5 rounds half to even
      [3, 4, 2, 100, 2, 2, 0, 0, 49, 49],
      [1, 1, 480, 640, 480, 480, 0, 0, 80, 80],
      [640, 640, 640, 640, 640, 640, 0, 0, 0, 0],
      [1000, 1, 640, 640, 640, 1, 319, 320, 0, 0],
      [7, 3, 5, 9, 9, 4, 0, 1, 0, 0],
      [810, 1080, 384, 640, 288, 384, 0, 0, 176, 176],
      [123, 457, 320, 320, 86, 320, 0, 0, 117, 117],
      [4000, 3000, 640, 480, 480, 360, 140, 140, 0, 0],
    ];
    for (const [w, h, H, W, ...expected] of table) {
      const g = letterboxGeometry(w!, h!, H!, W!);
      const { top, bottom, left, right } = g.pad!;
      assert.deepEqual(
        [g.resized.width, g.resized.height, top, bottom, left, right],
        expected,
        `${w}x${h} into ${W}x${H}`,
      );
    }
  });

  it('letterboxed pixels: the image unscaled where r = 1, grey 114 around it, centred with the odd row below', async () => {
    const root = tmpDir('adapruner-letterbox-');
    // 6x2 and 6x1 into 4x6 (H x W): r = 1, so the pixels pass unchanged; dh = 1 and 1.5.
    const two = knownPixels(2, 6, 1);
    const one = knownPixels(1, 6, 2);
    await writePng(path.join(root, 'a.png'), two, 6, 2);
    await writePng(path.join(root, 'b.png'), one, 6, 1);
    // A solid 2x1 red image scaled by 3 into 6x6: 6x3 of red (any filter keeps a constant), rows 1..3.
    const red = new Uint8Array([200, 10, 20, 200, 10, 20]);
    await writePng(path.join(root, 'c.png'), red, 2, 1);
    const data = await openDataset(root, { labels: 'optional' });
    const spec = { ...RAW, resize: 'letterbox' as const };
    const expect = (height: number, width: number, at: (y: number, x: number, c: number) => number) => {
      const out = new Float32Array(3 * height * width);
      for (let c = 0; c < 3; c++)
        for (let y = 0; y < height; y++)
          for (let x = 0; x < width; x++) out[c * height * width + y * width + x] = at(y, x, c);
      return out;
    };
    const [small] = await collect(data, { ...spec, size: [4, 6] }).then((b) => b);
    assert.deepEqual(small!.shape, [3, 3, 4, 6]);
    const plane = 3 * 4 * 6;
    const a = expect(4, 6, (y, x, c) => (y >= 1 && y < 3 ? two[((y - 1) * 6 + x) * 3 + c]! : 114));
    const b = expect(4, 6, (y, x, c) => (y === 1 ? one[x * 3 + c]! : 114));
    assert.deepEqual(small!.images.subarray(0, plane), a);
    assert.deepEqual(small!.images.subarray(plane, 2 * plane), b);
    const [big] = await collect(data, { ...spec, size: [6, 6] });
    const c = expect(6, 6, (y, _x, ch) => (y >= 1 && y < 4 ? red[ch]! : 114));
    assert.deepEqual(big!.images.subarray(2 * 108, 3 * 108), c);
    // stretch: every image fills 5x3 (H x W) exactly; the red one stays red.
    const [stretched] = await collect(data, { ...spec, resize: 'stretch', size: [5, 3] });
    assert.deepEqual(stretched!.shape, [3, 3, 5, 3]);
    assert.deepEqual(stretched!.images.subarray(90, 105), new Float32Array(15).fill(200));
  });

  it('the yolo preset, the size from the model input, and the spec checks', () => {
    const yolo = resolveSpec({ preset: 'yolo' }).spec;
    assert.deepEqual(yolo, PRESETS.yolo);
    assert.deepEqual(specForInput(yolo, [1, 3, 640, 480]).size, [640, 480]);
    assert.throws(
      () => specForInput(yolo, ['batch', 3, 'height', 'width'], 'm.onnx'),
      /m\.onnx: resize 'letterbox' fits images to the model's input height and width, which it leaves open: give --input-shape 1x3xHxW/,
    );
    // Other specs, and a spec naming the model's size, are left as they are; another size would fail every
    // batch in onnxruntime, so it is refused up front.
    assert.equal(specForInput(PRESETS.cifar10, [1, 3, 32, 32]), PRESETS.cifar10);
    const sized = { ...yolo, size: [320, 320] as [number, number] };
    assert.equal(specForInput(sized, [1, 3, 320, 320]), sized);
    assert.throws(
      () => specForInput(sized, [1, 3, 640, 640]),
      /makes 320x320 images, but the model's input is 640x640/,
    );
    const dir = tmpDir('adapruner-letterbox-spec-');
    const write = (spec: object) => {
      const file = path.join(dir, 'spec.json');
      fs.writeFileSync(file, JSON.stringify({ mean: [0, 0, 0], std: [1, 1, 1], ...spec }));
      return file;
    };
    assert.deepEqual(
      resolveSpec({ specFile: write({ resize: 'stretch', size: [224, 224] }) }).spec.size,
      [224, 224],
    );
    for (const [bad, why] of [
      [{ resize: 'letterbox', crop: 224 }, /crop does not combine with resize 'letterbox'/],
      [{ resize: 'fit' }, /resize must be a positive integer, 'letterbox' or 'stretch'/],
      [{ resize: 256, size: [224, 224] }, /size applies to resize 'letterbox' or 'stretch' only/],
      [{ resize: 'letterbox', size: [224] }, /size must be \[height, width\]/],
    ] as const)
      assert.throws(() => resolveSpec({ specFile: write(bad) }), why);
  });
});
