import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { batches, type Batch } from '../src/data/batches.js';
import { cacheRoot, extractTarOnce } from '../src/data/cache.js';
import type { Dataset } from '../src/data/dataset.js';
import { openDataset } from '../src/data/open.js';
import { PRESETS, augmentationAt, type Augmentation, type PreprocessSpec } from '../src/data/preprocess.js';
import { SHARED, needsShared, tmpDir } from './helpers.js';

const CIFAR_TAR = path.join(SHARED, 'data/cifar10-jpg.tar');
const FASHION = '/usr/share/datasets/fashion-mnist';
const CIFAR_CLASSES = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
];

/** The README's float32 recipe, written out independently of src/data. */
function torchNormalise(u8: number, mean: number, std: number): number {
  return Math.fround(Math.fround(Math.fround(u8 / 255) - Math.fround(mean)) / Math.fround(std));
}

async function collect(
  dataset: Dataset,
  spec: PreprocessSpec,
  batchSize = 64,
  indices?: ArrayLike<number>,
): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of batches(dataset, { spec, batchSize, ...(indices && { indices }) })) out.push(b);
  return out;
}

/** A 3-channel test image whose every pixel value is distinct and known: v(y, x, c). */
function knownPixels(height: number, width: number, seed: number): Uint8Array {
  const pixels = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < 3; c++)
        pixels[(y * width + x) * 3 + c] = (seed * 37 + y * 11 + x * 5 + c * 83) % 256;
  return pixels;
}

describe('CIFAR-10 JPEG folder (shared tar)', needsShared('data/cifar10-jpg.tar'), () => {
  it('extracts once into the cache and reuses it', async () => {
    const first = await extractTarOnce(CIFAR_TAR);
    const marker = fs.statSync(first).ino;
    const second = await extractTarOnce(CIFAR_TAR);
    assert.equal(second, first);
    assert.equal(fs.statSync(second).ino, marker, 'not extracted again');
    assert.ok(first.startsWith(await cacheRoot()), first);
    assert.equal(fs.statSync(await cacheRoot()).mode & 0o777, 0o700);
  });

  it('opens the test split from the .tar: 10,000 images, sorted class folders, image i is class i // 1000', async () => {
    const test = await openDataset(CIFAR_TAR, { split: 'test' });
    assert.equal(test.kind, 'image-folder');
    assert.equal(test.length, 10_000);
    assert.deepEqual([...test.classNames], CIFAR_CLASSES);
    for (const i of [0, 999, 1000, 4321, 9999]) assert.equal(test.labels[i], Math.floor(i / 1000));
    assert.equal(path.basename(test.describe(1039)), '0039.jpg');
    assert.equal(path.basename(path.dirname(test.describe(1039))), 'automobile');
    const train = await openDataset(CIFAR_TAR, { split: 'train' });
    assert.equal(train.length, 50_000);
    assert.equal(train.labels[49_999], 9);
  });

  it('decodes named images to the pixels sharp gives, normalised exactly as torch does', async () => {
    const test = await openDataset(CIFAR_TAR, { split: 'test' });
    const spec = PRESETS.cifar10;
    const indices = [0, 3039, 9945]; // airplane/0000, cat/0039, truck/0945
    const [batch] = await collect(test, spec, 3, indices);
    assert.deepEqual(batch!.shape, [3, 3, 32, 32]);
    assert.deepEqual([...batch!.labels], [0, 3, 9]);
    for (const [s, index] of indices.entries()) {
      const file = test.describe(index);
      const raw = await sharp(file).raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual([raw.info.width, raw.info.height, raw.info.channels], [32, 32, 3]);
      for (const [y, x, c] of [
        [0, 0, 0],
        [5, 17, 1],
        [31, 31, 2],
        [16, 3, 0],
      ] as const) {
        const expected = torchNormalise(raw.data[(y * 32 + x) * 3 + c]!, spec.mean[c]!, spec.std[c]!);
        assert.equal(batch!.images[s * 3072 + c * 1024 + y * 32 + x], expected, `${file} (${y},${x},${c})`);
      }
    }
  });

  it("decodes the whole test set like PIL: per-channel mean/std equal data/README.md's figures", async () => {
    const test = await openDataset(CIFAR_TAR, { split: 'test' });
    const identity: PreprocessSpec = {
      channels: 3,
      channelOrder: 'rgb',
      scale: 255,
      mean: [0, 0, 0],
      std: [1, 1, 1],
    };
    const sum = [0, 0, 0];
    const sumSq = [0, 0, 0];
    let pixels = 0;
    for await (const b of batches(test, { spec: identity, batchSize: 500 })) {
      for (let s = 0; s < b.n; s++)
        for (let c = 0; c < 3; c++)
          for (let p = 0; p < 1024; p++) {
            const v = b.images[s * 3072 + c * 1024 + p]!;
            sum[c] += v;
            sumSq[c] += v * v;
          }
      pixels += b.n * 1024;
    }
    const mean = sum.map((s) => s / pixels);
    const std = sumSq.map((s, c) => Math.sqrt(s / pixels - mean[c]! ** 2));
    // Published (PIL 9.4 / libjpeg-turbo), 4 decimals; R, G, B in that order (a BGR mix-up would fail).
    [0.4941, 0.4851, 0.4504].forEach((m, c) =>
      assert.ok(Math.abs(mean[c]! - m) <= 0.00005, `mean[${c}] ${mean[c]}`),
    );
    [0.2448, 0.2422, 0.2606].forEach((s, c) =>
      assert.ok(Math.abs(std[c]! - s) <= 0.00005, `std[${c}] ${std[c]}`),
    );
  });
});

describe('image folders written by the test (PNG, WebP, grayscale, resize and crop)', () => {
  async function writeFolder(): Promise<{ root: string; images: Map<string, Uint8Array> }> {
    const root = tmpDir('adapruner-folder-');
    const images = new Map<string, Uint8Array>();
    const layout: [string, string, 'png' | 'webp'][] = [
      ['zebra', 'b.png', 'png'],
      ['zebra', 'a.png', 'png'],
      ['Apple', 'x.webp', 'webp'],
      ['mango', 'm1.png', 'png'],
    ];
    for (const [k, [cls, name, format]] of layout.entries()) {
      fs.mkdirSync(path.join(root, cls), { recursive: true });
      const pixels = knownPixels(8, 6, k);
      const image = sharp(pixels, { raw: { width: 6, height: 8, channels: 3 } });
      await (format === 'png' ? image.png() : image.webp({ lossless: true })).toFile(
        path.join(root, cls, name),
      );
      images.set(`${cls}/${name}`, pixels);
    }
    fs.writeFileSync(path.join(root, 'mango', 'notes.txt'), 'not an image');
    return { root, images };
  }

  it('labels by sorted folder name, lists files sorted, and returns exactly the written pixels in NCHW', async () => {
    const { root, images } = await writeFolder();
    const data = await openDataset(root);
    assert.equal(data.kind, 'image-folder');
    assert.deepEqual([...data.classNames], ['Apple', 'mango', 'zebra']); // code-unit order: capitals first
    assert.deepEqual([...data.labels], [0, 1, 2, 2]);
    assert.deepEqual(
      [0, 1, 2, 3].map((i) => path.relative(root, data.describe(i))),
      ['Apple/x.webp', 'mango/m1.png', 'zebra/a.png', 'zebra/b.png'],
    );
    const spec: PreprocessSpec = {
      channels: 3,
      channelOrder: 'rgb',
      scale: 255,
      mean: [0.1, 0.2, 0.3],
      std: [0.5, 0.6, 0.7],
    };
    const [batch] = await collect(data, spec, 4);
    assert.deepEqual(batch!.shape, [4, 3, 8, 6]);
    for (let s = 0; s < 4; s++) {
      const written = images.get(path.relative(root, data.describe(s)))!;
      for (let c = 0; c < 3; c++)
        for (let p = 0; p < 48; p++)
          assert.equal(
            batch!.images[s * 144 + c * 48 + p],
            torchNormalise(written[p * 3 + c]!, spec.mean[c]!, spec.std[c]!),
          );
    }
  });

  it('bgr order swaps the colour planes; 1 channel decodes grayscale', async () => {
    const { root, images } = await writeFolder();
    const data = await openDataset(root);
    const neutral = { scale: 255, mean: [0, 0, 0], std: [1, 1, 1] };
    const [bgr] = await collect(data, { ...neutral, channels: 3, channelOrder: 'bgr' }, 1, [1]);
    const written = images.get('mango/m1.png')!;
    assert.equal(bgr!.images[0], Math.fround(written[2]! / 255)); // plane 0 holds blue
    assert.equal(bgr!.images[2 * 48], Math.fround(written[0]! / 255));
    const [gray] = await collect(
      data,
      { channels: 1, channelOrder: 'rgb', scale: 255, mean: [0], std: [1] },
      2,
    );
    assert.deepEqual(gray!.shape, [2, 1, 8, 6]);
  });

  it('resizes the shorter side and center-crops like torchvision', async () => {
    const root = tmpDir('adapruner-resize-');
    fs.mkdirSync(path.join(root, 'only'));
    await sharp(knownPixels(60, 40, 1), { raw: { width: 40, height: 60, channels: 3 } })
      .png()
      .toFile(path.join(root, 'only', 'tall.png'));
    const data = await openDataset(root);
    const base = {
      channels: 3 as const,
      channelOrder: 'rgb' as const,
      scale: 255,
      mean: [0, 0, 0],
      std: [1, 1, 1],
    };
    const [resized] = await collect(data, { ...base, resize: 20 }, 1);
    assert.deepEqual(resized!.shape, [1, 3, 30, 20]); // 40x60 → shorter side 20 → 20x30
    const [cropped] = await collect(data, { ...base, crop: 10 }, 1);
    assert.deepEqual(cropped!.shape, [1, 3, 10, 10]);
    // Crop offsets: left = round((40-10)/2) = 15, top = round((60-10)/2) = 25.
    const pixels = knownPixels(60, 40, 1);
    assert.equal(cropped!.images[0], Math.fround(pixels[(25 * 40 + 15) * 3]! / 255));
    await assert.rejects(collect(data, { ...base, crop: 50 }, 1), /smaller than the 50x50 crop/);
  });

  it('augmentation is a seeded padded crop plus flip, reproducible, and different per epoch', async () => {
    const root = tmpDir('adapruner-augment-');
    fs.mkdirSync(path.join(root, 'c'));
    const pixels = knownPixels(8, 8, 3);
    await sharp(pixels, { raw: { width: 8, height: 8, channels: 3 } })
      .png()
      .toFile(path.join(root, 'c', 'img.png'));
    const data = await openDataset(root);
    const spec: PreprocessSpec = {
      channels: 3,
      channelOrder: 'rgb',
      scale: 255,
      mean: [0, 0, 0],
      std: [1, 1, 1],
      augment: { cropPadding: 2, horizontalFlip: true },
    };
    const run = async (seed: number, epoch: number, level: Augmentation = 'full') => {
      const out: Float32Array[] = [];
      const at = { ...spec, augment: augmentationAt(spec, level) };
      for await (const b of batches(data, { spec: at, batchSize: 1, augmentSeed: seed, epoch }))
        out.push(b.images);
      return out[0]!;
    };
    // Every augmented image must equal one of the (2p+1)^2 x 2 placements computed here from the definition.
    const placements: string[] = [];
    for (let dy = 0; dy <= 4; dy++)
      for (let dx = 0; dx <= 4; dx++)
        for (const flip of [false, true]) {
          const img = new Float32Array(192);
          for (let c = 0; c < 3; c++)
            for (let y = 0; y < 8; y++)
              for (let x = 0; x < 8; x++) {
                const sy = y + dy - 2;
                const sx = (flip ? 7 - x : x) + dx - 2;
                const v = sy >= 0 && sy < 8 && sx >= 0 && sx < 8 ? pixels[(sy * 8 + sx) * 3 + c]! : 0;
                img[c * 64 + y * 8 + x] = Math.fround(v / 255);
              }
          placements.push(img.join());
        }
    const seen = new Set<string>();
    for (let epoch = 0; epoch < 12; epoch++) {
      const img = await run(7, epoch);
      assert.ok(placements.includes(img.join()), `epoch ${epoch} is a valid crop/flip`);
      assert.deepEqual(await run(7, epoch), img, 'same seed and epoch, same result');
      seen.add(img.join());
    }
    assert.ok(seen.size > 3, `epochs give different placements (${seen.size} distinct)`);
    // `flip` keeps the image in place (offset 2, 2: index 24 unflipped, 25 flipped) and mirrors about half of them.
    const flips = new Set<string>();
    for (let epoch = 0; epoch < 12; epoch++) {
      const img = (await run(7, epoch, 'flip')).join();
      assert.ok(
        [placements[24], placements[25]].includes(img),
        `epoch ${epoch}: flipped or not, never shifted`,
      );
      flips.add(img);
      assert.equal((await run(7, epoch, 'none')).join(), placements[24], 'none: the plain image');
    }
    assert.equal(flips.size, 2, 'both orientations occur');
    assert.equal(
      augmentationAt(PRESETS.mnist, 'flip'),
      undefined,
      'a spec without a flip (digits) has nothing left',
    );
    assert.deepEqual(augmentationAt(PRESETS.cifar10, 'full'), PRESETS.cifar10.augment);
  });

  it('keeps decoded images for a second pass, within the byte budget; budget 0 decodes again', async () => {
    const { root } = await writeFolder();
    const spec = PRESETS.cifar10;
    const cached = await openDataset(root);
    const uncached = await openDataset(root, { decodedCacheBytes: 0 });
    const first = await collect(cached, spec, 4);
    await collect(uncached, spec, 4);
    fs.rmSync(path.join(root, 'zebra', 'a.png'));
    assert.deepEqual(await collect(cached, spec, 4), first, 'second pass served from memory');
    await assert.rejects(
      collect(uncached, spec, 4),
      /zebra\/a\.png: cannot read the image \(no such file or folder\)/,
    );
    const other = (await writeFolder()).root;
    const tight = await openDataset(other, { decodedCacheBytes: 2 * 8 * 6 * 3 }); // room for two images
    for await (const _ of batches(tight, { spec, batchSize: 1, ahead: 0, indices: [0, 1, 3] })); // one at a time
    fs.rmSync(other, { recursive: true });
    assert.equal((await collect(tight, spec, 2, [0, 1]))[0]!.n, 2, 'the first two decoded stay');
    await assert.rejects(collect(tight, spec, 1, [3]), /b\.png: cannot read the image/);
  });

  it('refuses images of different sizes in one batch, naming the file', async () => {
    const root = tmpDir('adapruner-sizes-');
    fs.mkdirSync(path.join(root, 'a'));
    await sharp(knownPixels(8, 8, 0), { raw: { width: 8, height: 8, channels: 3 } })
      .png()
      .toFile(path.join(root, 'a', '1.png'));
    await sharp(knownPixels(9, 8, 0), { raw: { width: 8, height: 9, channels: 3 } })
      .png()
      .toFile(path.join(root, 'a', '2.png'));
    const data = await openDataset(root);
    await assert.rejects(collect(data, PRESETS.cifar10, 2), /2\.png: is 8x9 but .*1\.png is 8x8/);
  });
});

/** Writes an IDX file: magic 0x0000 08 rank, big-endian dims, bytes. */
function idxBytes(dims: number[], data: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header.writeUInt8(0x08, 2);
  header.writeUInt8(dims.length, 3);
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, data]);
}

describe('IDX files (MNIST layout)', () => {
  it('reads a small IDX set written by the test, gzip and raw, split by train/t10k', async () => {
    const root = tmpDir('adapruner-idx-');
    const images = Uint8Array.from({ length: 5 * 4 * 3 }, (_, i) => (i * 7) % 256);
    const labels = Uint8Array.from([3, 0, 2, 2, 1]);
    fs.writeFileSync(path.join(root, 'train-images-idx3-ubyte.gz'), gzipSync(idxBytes([5, 4, 3], images)));
    fs.writeFileSync(path.join(root, 'train-labels-idx1-ubyte.gz'), gzipSync(idxBytes([5], labels)));
    fs.writeFileSync(path.join(root, 't10k-images-idx3-ubyte'), idxBytes([1, 4, 3], images.subarray(0, 12)));
    fs.writeFileSync(path.join(root, 't10k-labels-idx1-ubyte'), idxBytes([1], Uint8Array.from([1])));
    const train = await openDataset(root, { split: 'train' });
    assert.equal(train.kind, 'idx');
    assert.deepEqual([...train.labels], [3, 0, 2, 2, 1]);
    assert.deepEqual([...train.classNames], ['0', '1', '2', '3']);
    const spec = { ...PRESETS.mnist };
    const [batch] = await collect(train, spec, 5);
    assert.deepEqual(batch!.shape, [5, 1, 4, 3]);
    for (const i of [0, 13, 59]) assert.equal(batch!.images[i], torchNormalise(images[i]!, 0.1307, 0.3081));
    const test = await openDataset(root, { split: 'test' });
    assert.equal(test.length, 1);
    // A colour model's spec repeats the gray channel.
    const [rgb] = await collect(test, PRESETS.cifar10, 1);
    assert.deepEqual(rgb!.shape, [1, 3, 4, 3]);
    assert.equal(rgb!.images[12], torchNormalise(images[0]!, 0.456, 0.224));
  });

  it('rejects truncated IDX data and mismatched label counts, naming the file', async () => {
    const root = tmpDir('adapruner-idx-bad-');
    fs.writeFileSync(path.join(root, 'train-images-idx3-ubyte'), idxBytes([5, 4, 3], new Uint8Array(50)));
    fs.writeFileSync(path.join(root, 'train-labels-idx1-ubyte'), idxBytes([5], new Uint8Array(5)));
    await assert.rejects(
      openDataset(root, { split: 'train' }),
      /train-images-idx3-ubyte: IDX header promises 60 bytes/,
    );
    fs.writeFileSync(path.join(root, 'train-images-idx3-ubyte'), idxBytes([5, 4, 3], new Uint8Array(60)));
    fs.writeFileSync(path.join(root, 'train-labels-idx1-ubyte'), idxBytes([4], new Uint8Array(4)));
    await assert.rejects(
      openDataset(root, { split: 'train' }),
      /train-labels-idx1-ubyte: has 4 labels for 5 images/,
    );
  });

  const fashion = fs.existsSync(path.join(FASHION, 'train-images-idx3-ubyte.gz'))
    ? { skip: false as const }
    : { skip: `${FASHION} is absent (apt package dataset-fashion-mnist not installed)` };
  it('reads the real Fashion-MNIST (Debian dataset-fashion-mnist)', fashion, async () => {
    const train = await openDataset(FASHION, { split: 'train' });
    const test = await openDataset(FASHION, { split: 'test' });
    assert.equal(train.length, 60_000);
    assert.equal(test.length, 10_000);
    assert.equal(train.classNames[9], 'Ankle boot');
    const perClass = new Array(10).fill(0);
    for (const l of test.labels) perClass[l]++;
    assert.deepEqual(perClass, new Array(10).fill(1000));
    assert.equal(train.labels[0], 9); // the first training image is an ankle boot
    // Pixels against an independent parse: gunzip, skip the 16-byte header, 784 bytes per image.
    const { gunzipSync } = await import('node:zlib');
    const raw = gunzipSync(fs.readFileSync(path.join(FASHION, 't10k-images-idx3-ubyte.gz')));
    const [batch] = await collect(test, PRESETS.fmnist, 3, [0, 5000, 9999]);
    assert.deepEqual(batch!.shape, [3, 1, 28, 28]);
    for (const [s, index] of [0, 5000, 9999].entries())
      for (const p of [0, 300, 406, 783])
        assert.equal(batch!.images[s * 784 + p], torchNormalise(raw[16 + index * 784 + p]!, 0.286, 0.353));
  });
});

describe('CIFAR binary batches written by the test', () => {
  /** One record: label byte(s), then R, G, B planes of 32x32. */
  function record(labels: number[], seed: number): Buffer {
    const pixels = Buffer.alloc(3072);
    for (let i = 0; i < 3072; i++) pixels[i] = (i * 3 + seed * 17) % 256;
    return Buffer.concat([Buffer.from(labels), pixels]);
  }

  it('CIFAR-10: data_batch_N for train (in batch order), test_batch for test, names from batches.meta.txt', async () => {
    const root = tmpDir('adapruner-cifar10bin-');
    fs.writeFileSync(path.join(root, 'data_batch_1.bin'), Buffer.concat([record([4], 0), record([1], 1)]));
    fs.writeFileSync(path.join(root, 'data_batch_2.bin'), record([7], 2));
    fs.writeFileSync(path.join(root, 'test_batch.bin'), record([9], 3));
    fs.writeFileSync(path.join(root, 'batches.meta.txt'), CIFAR_CLASSES.join('\n') + '\n\n');
    const train = await openDataset(root, { split: 'train' });
    assert.equal(train.kind, 'cifar-binary');
    assert.deepEqual([...train.labels], [4, 1, 7]);
    assert.deepEqual([...train.classNames], CIFAR_CLASSES);
    const identity = {
      channels: 3 as const,
      channelOrder: 'rgb' as const,
      scale: 255,
      mean: [0, 0, 0],
      std: [1, 1, 1],
    };
    const [batch] = await collect(train, identity, 3);
    const planes = record([7], 2).subarray(1);
    // Planar in the file and in NCHW: the same layout, so values match position by position.
    for (const i of [0, 1023, 1024, 2048, 3071])
      assert.equal(batch!.images[2 * 3072 + i], Math.fround(planes[i]! / 255));
    const test = await openDataset(root, { split: 'test' });
    assert.deepEqual([...test.labels], [9]);
  });

  it('CIFAR-100: train.bin/test.bin with coarse + fine labels; the fine label is used', async () => {
    const root = tmpDir('adapruner-cifar100bin-');
    fs.writeFileSync(path.join(root, 'train.bin'), Buffer.concat([record([3, 71], 0), record([19, 5], 1)]));
    fs.writeFileSync(path.join(root, 'test.bin'), record([0, 99], 2));
    const train = await openDataset(root, { split: 'train' });
    assert.deepEqual([...train.labels], [71, 5]);
    assert.equal(train.classNames.length, 72);
    const test = await openDataset(path.join(root, 'test.bin'));
    assert.deepEqual([...test.labels], [99]);
  });

  it('rejects a file that is not a whole number of records', async () => {
    const root = tmpDir('adapruner-cifarbad-');
    fs.writeFileSync(path.join(root, 'test_batch.bin'), Buffer.alloc(3000));
    await assert.rejects(openDataset(root), /test_batch\.bin: is not a CIFAR binary batch \(3000 bytes/);
  });
});

describe('auto-detection', () => {
  it('descends into a lone root folder and picks the split folder', async () => {
    const root = tmpDir('adapruner-detect-');
    for (const split of ['train', 'val']) {
      fs.mkdirSync(path.join(root, 'dataset', split, 'k'), { recursive: true });
      await sharp(knownPixels(4, 4, 0), { raw: { width: 4, height: 4, channels: 3 } })
        .png()
        .toFile(path.join(root, 'dataset', split, 'k', `${split}.png`));
    }
    const test = await openDataset(root, { split: 'test' });
    assert.match(test.describe(0), /val\/k\/val\.png$/);
    const train = await openDataset(root, { split: 'train' });
    assert.match(train.describe(0), /train\/k\/train\.png$/);
  });

  it('names the path in every refusal', async () => {
    const root = tmpDir('adapruner-detect-bad-');
    await assert.rejects(
      openDataset(path.join(root, 'missing')),
      /missing: cannot read the data \(no such file or folder\)/,
    );
    fs.mkdirSync(path.join(root, 'empty-class', 'a'), { recursive: true });
    fs.mkdirSync(path.join(root, 'empty-class', 'b'), { recursive: true });
    fs.writeFileSync(path.join(root, 'empty-class', 'a', 'x.png'), '');
    await assert.rejects(
      openDataset(path.join(root, 'empty-class')),
      /empty-class\/b: class folder has no images/,
    );
    fs.mkdirSync(path.join(root, 'only-train', 'train', 'c'), { recursive: true });
    await assert.rejects(
      openDataset(path.join(root, 'only-train'), { split: 'test' }),
      /only-train: has no test split folder/,
    );
    fs.writeFileSync(path.join(root, 'notes.txt'), 'x');
    await assert.rejects(
      openDataset(path.join(root, 'notes.txt')),
      /notes\.txt: line 1: names no image file/,
    );
    fs.writeFileSync(path.join(root, 'notes.md'), 'x');
    await assert.rejects(openDataset(path.join(root, 'notes.md')), /notes\.md: is not a dataset/);
  });
});
