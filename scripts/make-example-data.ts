/**
 * Writes the bundled example's data: a seeded, class-balanced sample of Fashion-MNIST (Debian's
 * dataset-fashion-mnist package) as gzip IDX files in fixtures/example/fashion-mnist/.
 * Usage: tsx scripts/make-example-data.ts [SOURCE_DIR] (default /usr/share/datasets/fashion-mnist)
 */
import fs from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { parseIdx } from '../src/data/idx.js';
import { balancedSubset } from '../src/data/subset.js';

const source = process.argv[2] ?? '/usr/share/datasets/fashion-mnist';
const target = path.join(
  path.dirname(new URL(import.meta.url).pathname),
  '..',
  'fixtures',
  'example',
  'fashion-mnist',
);
const counts = { train: 3000, t10k: 1000 };

function idxBytes(dims: number[], data: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, data]);
}

fs.mkdirSync(target, { recursive: true });
for (const [split, count] of Object.entries(counts)) {
  const read = (kind: string): ReturnType<typeof parseIdx> => {
    const name = `${split}-${kind}-idx${kind === 'images' ? 3 : 1}-ubyte.gz`;
    return parseIdx(fs.readFileSync(path.join(source, name)), name);
  };
  const images = read('images');
  const labels = read('labels');
  const chosen = balancedSubset(Int32Array.from(labels.data), count, 2026);
  const pixels = images.dims[1]! * images.dims[2]!;
  const outImages = new Uint8Array(chosen.length * pixels);
  const outLabels = new Uint8Array(chosen.length);
  chosen.forEach((index, k) => {
    outImages.set(images.data.subarray(index * pixels, (index + 1) * pixels), k * pixels);
    outLabels[k] = labels.data[index]!;
  });
  // mtime 0 in the gzip header keeps the files byte-identical between runs.
  fs.writeFileSync(
    path.join(target, `${split}-images-idx3-ubyte.gz`),
    gzipSync(idxBytes([chosen.length, images.dims[1]!, images.dims[2]!], outImages), { level: 9 }),
  );
  fs.writeFileSync(
    path.join(target, `${split}-labels-idx1-ubyte.gz`),
    gzipSync(idxBytes([chosen.length], outLabels), { level: 9 }),
  );
  console.log(`${split}: ${chosen.length} images`);
}
