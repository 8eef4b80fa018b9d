import type { Stats } from 'node:fs';
import { opendir, readdir, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative } from 'node:path';
import { UserError } from '../errors.js';
import { fsErrorReason } from './error-text.js';
import type { Dataset, Sample } from './dataset.js';
import { DecodedCache, DEFAULT_DECODED_CACHE_BYTES } from './decoded-cache.js';
import { decodeImageFile } from './image.js';
import type { PreprocessSpec } from './preprocess.js';

export const IMAGE_EXTENSIONS = /\.(jpe?g|png|webp)$/i;

/**
 * The ImageNet layout: one subfolder per class, label order = sorted folder names. Only file names are kept
 * (grouped per class) and, up to a byte budget, decoded pixels for reuse (see DecodedCache); a 1.2M-image folder
 * costs its names' memory plus that budget.
 */
export class ImageFolderDataset implements Dataset {
  readonly kind = 'image-folder';
  readonly labels: Int32Array;
  readonly length: number;
  /** Index of the first sample of each class, plus the total at the end. */
  private readonly classStart: Int32Array;
  private readonly cache: DecodedCache;

  private constructor(
    readonly path: string,
    readonly classNames: readonly string[],
    private readonly fileNames: readonly (readonly string[])[],
    cacheBytes: number,
  ) {
    this.cache = new DecodedCache(cacheBytes);
    this.classStart = new Int32Array(fileNames.length + 1);
    fileNames.forEach((names, c) => (this.classStart[c + 1] = this.classStart[c]! + names.length));
    this.length = this.classStart[fileNames.length]!;
    this.labels = new Int32Array(this.length);
    fileNames.forEach((_, c) => this.labels.fill(c, this.classStart[c], this.classStart[c + 1]));
  }

  /** Lists the class folders (sorted) and their image files (sorted, so sample order is stable). */
  static async open(root: string, cacheBytes = DEFAULT_DECODED_CACHE_BYTES): Promise<ImageFolderDataset> {
    const realRoot = await realpath(root).catch(() => root);
    const classNames: string[] = [];
    for (const e of await listEntries(root)) {
      if (e.name.startsWith('.')) continue;
      if (
        e.isDirectory() ||
        (e.isSymbolicLink() && (await linkInside(realRoot, join(root, e.name))).isDirectory())
      )
        classNames.push(e.name);
    }
    classNames.sort(compareCodeUnits);
    if (classNames.length === 0)
      throw new UserError('has no class folders (expected one subfolder per class)', root);
    const fileNames: string[][] = [];
    for (const name of classNames) {
      const folder = join(root, name);
      const files: string[] = [];
      // opendir streams the entries instead of building one array of Dirent objects for a huge folder.
      for await (const entry of await opendir(folder, { bufferSize: 256 })) {
        if (!entry.isDirectory() && IMAGE_EXTENSIONS.test(entry.name) && !entry.name.startsWith('.')) {
          if (entry.isSymbolicLink()) await linkInside(realRoot, join(folder, entry.name));
          files.push(entry.name);
        }
      }
      if (files.length === 0)
        throw new UserError('class folder has no images (.jpg, .jpeg, .png, .webp)', folder);
      fileNames.push(files.sort(compareCodeUnits));
    }
    return new ImageFolderDataset(root, classNames, fileNames, cacheBytes);
  }

  describe(index: number): string {
    const c = this.labels[index]!;
    return join(this.path, this.classNames[c]!, this.fileNames[c]![index - this.classStart[c]!]!);
  }

  async load(index: number, spec: PreprocessSpec): Promise<Sample> {
    const cached = this.cache.get(index, spec);
    if (cached) return cached;
    const sample = await decodeImageFile(this.describe(index), spec);
    this.cache.put(index, spec, sample);
    return sample;
  }
}

/**
 * A symbolic link inside a data set is followed only when it stays inside the data set's folder: a link out
 * of it (planted in a shared folder or shipped in an archive) would read files the user never named.
 */
export async function linkInside(realRoot: string, link: string): Promise<Stats> {
  let target: string;
  try {
    target = await realpath(link);
  } catch (e) {
    throw new UserError(`is a broken symbolic link (${fsErrorReason(e)})`, link);
  }
  const rel = relative(realRoot, target);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel))
    throw new UserError('is a symbolic link out of the data set; links are followed only inside it', link);
  return stat(target);
}

async function listEntries(folder: string) {
  try {
    return await readdir(folder, { withFileTypes: true });
  } catch (e) {
    throw new UserError(`cannot read the folder (${fsErrorReason(e)})`, folder);
  }
}

/** Plain code-unit order, as Python's sorted() in torchvision's ImageFolder; not locale order. */
export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
