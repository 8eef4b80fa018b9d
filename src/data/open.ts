import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { noteInput } from '../run-files.js';
import { fsErrorReason } from './error-text.js';
import { extractTarOnce } from './cache.js';
import { CifarBinaryDataset, looksLikeCifarFolder, type Split } from './cifar-binary.js';
import { requireLabels, type AnyDataset, type Dataset } from './dataset.js';
import { IdxDataset, looksLikeIdxFolder } from './idx.js';
import { IMAGE_EXTENSIONS, ImageFolderDataset } from './image-folder.js';
import { UnlabelledImages } from './unlabelled.js';
import { isTokenData, openTokens, type TokenModel } from './tokens.js';

export interface OpenOptions {
  /** Which split where the data has several (train/test folders, CIFAR batches, IDX train/t10k files). */
  split?: Split;
  /** Memory for decoded images kept for later passes (image folders); 0 turns the cache off. Default 256 MiB. */
  decodedCacheBytes?: number;
  /**
   * `required` (default): a data set without labels is refused in one line (requireLabels). `optional`: it is
   * returned as an UnlabelledDataset, for what reads only images.
   */
  labels?: 'required' | 'optional';
  /** With labels required: completes "this data set has no labels; …" (what needs them, how to give them). */
  labelsNeededFor?: string;
  /** The text model's inputs, which a `.jsonl` token file is read against (tokenModelOf). */
  tokens?: TokenModel;
}

/** Names a folder may use for each split, in order of preference. */
const SPLIT_FOLDERS: Record<Split, string[]> = { train: ['train'], test: ['test', 'val', 'validation'] };

/**
 * Opens a dataset, recognising its kind from the path:
 * - a `.tar` archive: extracted once into the cache, then recognised as below;
 * - a `.txt` file: a list of image paths, one per line, relative to it (unlabelled);
 * - a `.jsonl` file: a text model's token ids, one sample per line (src/data/tokens.ts; needs `tokens`);
 * - a folder with IDX files (`train-images-idx3-ubyte[.gz]`, `t10k-…`), or an IDX images file;
 * - a folder with CIFAR binary batches (`data_batch_N.bin`/`test_batch.bin`, or CIFAR-100's `train.bin`/`test.bin`),
 *   or one `.bin` batch;
 * - a folder with image files directly inside: unlabelled (refused when a subfolder holds images too: mixed);
 * - a folder with `train`/`test` (or `val`) subfolders: the split's subfolder, recognised again;
 * - a folder whose only subfolder is one folder, and no images (an unpacked archive's root): that folder,
 *   recognised again; a lone folder of images is one class where labels are required, else unlabelled;
 * - otherwise a folder of class folders (ImageNet layout).
 * Without `labels: 'optional'`, an unlabelled set is refused in one line.
 */
export function openDataset(path: string, options: OpenOptions & { labels: 'optional' }): Promise<AnyDataset>;
export function openDataset(path: string, options?: OpenOptions): Promise<Dataset>;
export async function openDataset(path: string, options: OpenOptions = {}): Promise<AnyDataset> {
  const dataset = await openAny(path, options);
  return options.labels === 'optional' ? dataset : requireLabels(dataset, options.labelsNeededFor);
}

async function openAny(path: string, options: OpenOptions): Promise<AnyDataset> {
  const split = options.split ?? 'test';
  const info = await stat(path).catch((e: NodeJS.ErrnoException) => {
    throw new UserError(`cannot read the data (${fsErrorReason(e)})`, path);
  });
  noteInput(path, 'the data set', info.isDirectory());
  if (info.isFile()) {
    if (/\.tar$/i.test(path)) return openAny(await extractTarOnce(path), options);
    if (/\.txt$/i.test(path)) return UnlabelledImages.openList(path, options.decodedCacheBytes);
    if (isTokenData(path)) {
      if (!options.tokens)
        throw new UserError('is token data (.jsonl), which this command does not read: give images', path);
      return openTokens(path, options.tokens);
    }
    if (/idx3-ubyte(\.gz)?$/i.test(path)) return IdxDataset.open(path, split, true);
    if (/\.bin$/i.test(path)) return CifarBinaryDataset.open(path, split, true);
    throw new UserError(
      'is not a dataset (expected a folder, a .tar archive, a .txt list of images, an IDX images file, a CIFAR .bin batch or .jsonl token ids)',
      path,
    );
  }
  if (!info.isDirectory())
    throw new UserError('is not a data set: neither a folder nor a regular file', path);
  const entries = await readdir(path, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
    throw new UserError(`cannot read the folder (${fsErrorReason(e)})`, path);
  });
  const visible = entries.filter((e) => !e.name.startsWith('.'));
  const fileNames = visible.filter((e) => e.isFile()).map((e) => e.name);
  if (looksLikeIdxFolder(fileNames)) return IdxDataset.open(path, split);
  if (looksLikeCifarFolder(fileNames)) return CifarBinaryDataset.open(path, split);

  const folders = visible.filter((e) => e.isDirectory());
  const images = visible.filter((e) => (e.isFile() || e.isSymbolicLink()) && IMAGE_EXTENSIONS.test(e.name));
  if (images.length > 0) {
    for (const f of folders)
      if (await holdsImages(join(path, f.name)))
        throw new UserError(
          `mixes images directly inside with a subfolder of images (${f.name}): give one subfolder per class (labelled) or only images (unlabelled), not both`,
          path,
        );
    const list = images.map((e) => ({ name: e.name, symlink: e.isSymbolicLink() }));
    return UnlabelledImages.openFolder(path, list, options.decodedCacheBytes);
  }
  const splitFolder = findSplitFolder(path, folders, split);
  if (splitFolder) return openAny(join(path, splitFolder), options);
  // Other files beside it (a README, a licence) do not matter: no images are at this level. A lone folder of
  // images is one class where labels are required (as before unlabelled sets), else unlabelled images: one
  // class labels nothing, and training on it would teach the model that class alone.
  const lone = folders.length === 1 ? join(path, folders[0]!.name) : undefined;
  if (lone && (options.labels === 'optional' || !(await holdsImages(lone)))) return openAny(lone, options);
  if (folders.length === 0 && !visible.some((e) => e.isSymbolicLink()))
    throw new UserError(
      'has no images: expected image files (.jpg, .jpeg, .png, .webp) in it, or one subfolder of them per class',
      path,
    );
  return ImageFolderDataset.open(path, options.decodedCacheBytes);
}

/** Whether a folder directly holds image files (hidden names, such as macOS's `._x.jpg`, do not count). */
async function holdsImages(folder: string): Promise<boolean> {
  const names = await readdir(folder).catch(() => [] as string[]);
  return names.some((n) => !n.startsWith('.') && IMAGE_EXTENSIONS.test(n));
}

function findSplitFolder(path: string, folders: Dirent[], split: Split): string | undefined {
  const names = new Set(folders.map((f) => f.name));
  const splitNames = [...SPLIT_FOLDERS.train, ...SPLIT_FOLDERS.test].filter((n) => names.has(n));
  if (splitNames.length === 0) return undefined;
  const found = SPLIT_FOLDERS[split].find((n) => names.has(n));
  if (!found) throw new UserError(`has no ${split} split folder (found: ${splitNames.join(', ')})`, path);
  return found;
}
