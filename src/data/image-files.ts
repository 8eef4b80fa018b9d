import type { Sample } from './dataset.js';
import { DecodedCache } from './decoded-cache.js';
import { decodeImageFile } from './image.js';
import type { PreprocessSpec } from './preprocess.js';

/**
 * Images addressed by index in a fixed list of files, decoded on demand through a bounded cache: what an
 * unlabelled folder or list and a task folder (images with label files beside them) have in common.
 */
export abstract class ImageFiles {
  readonly length: number;
  private readonly cache: DecodedCache;

  protected constructor(
    protected readonly files: readonly string[],
    cacheBytes: number,
  ) {
    this.length = files.length;
    this.cache = new DecodedCache(cacheBytes);
  }

  describe(index: number): string {
    return this.files[index]!;
  }

  async load(index: number, spec: PreprocessSpec): Promise<Sample> {
    const cached = this.cache.get(index, spec);
    if (cached) return cached;
    const sample = await decodeImageFile(this.files[index]!, spec);
    this.cache.put(index, spec, sample);
    return sample;
  }
}
