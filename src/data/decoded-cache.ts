import type { Sample } from './dataset.js';
import type { PreprocessSpec } from './preprocess.js';

/** Default budget: all of CIFAR-10's 60,000 decoded images (176 MiB) fit; 1,700 ImageNet crops do. */
export const DEFAULT_DECODED_CACHE_BYTES = 256 * 2 ** 20;

/**
 * Decoded pixels kept in memory so that a second pass over the same images (another epoch, another candidate
 * scored on the same subset) skips decoding, which for small images costs as much CPU as a ResNet's inference.
 * Images are kept as they first arrive until the byte budget is spent, then no more: on passes larger than
 * the budget an LRU would evict everything before its reuse, while this keeps a fixed share hitting.
 * Only one decode geometry (channels, resize, size, crop) is cached at a time.
 */
export class DecodedCache {
  private readonly samples = new Map<number, Sample>();
  private geometry: string | undefined;
  private bytes = 0;

  constructor(private readonly budget: number) {}

  get(index: number, spec: PreprocessSpec): Sample | undefined {
    return this.geometry === geometryKey(spec) ? this.samples.get(index) : undefined;
  }

  put(index: number, spec: PreprocessSpec, sample: Sample): void {
    const key = geometryKey(spec);
    if (this.geometry === undefined) this.geometry = key;
    if (key !== this.geometry || this.bytes + sample.pixels.byteLength > this.budget) return;
    this.samples.set(index, sample);
    this.bytes += sample.pixels.byteLength;
  }
}

function geometryKey(spec: PreprocessSpec): string {
  return `${spec.channels}/${spec.resize ?? ''}/${spec.size?.join('x') ?? ''}/${spec.crop ?? ''}`;
}
