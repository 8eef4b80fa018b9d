import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { noteInput } from '../run-files.js';
import { fsErrorReason } from './error-text.js';
import { extractTarOnce } from './cache.js';
import { CifarBinaryDataset, looksLikeCifarFolder, type Split } from './cifar-binary.js';
import type { Dataset } from './dataset.js';
import { IdxDataset, looksLikeIdxFolder } from './idx.js';
import { IMAGE_EXTENSIONS, ImageFolderDataset } from './image-folder.js';

export interface OpenOptions {
  /** Which split where the data has several (train/test folders, CIFAR batches, IDX train/t10k files). */
  split?: Split;
  /** Memory for decoded images kept for later passes (image folders); 0 turns the cache off. Default 256 MiB. */
  decodedCacheBytes?: number;
}

/** Names a folder may use for each split, in order of preference. */
const SPLIT_FOLDERS: Record<Split, string[]> = { train: ['train'], test: ['test', 'val', 'validation'] };

/**
 * Opens a dataset, recognising its kind from the path:
 * - a `.tar` archive: extracted once into the cache, then recognised as below;
 * - a folder with IDX files (`train-images-idx3-ubyte[.gz]`, `t10k-…`), or an IDX images file;
 * - a folder with CIFAR binary batches (`data_batch_N.bin`/`test_batch.bin`, or CIFAR-100's `train.bin`/`test.bin`),
 *   or one `.bin` batch;
 * - a folder with `train`/`test` (or `val`) subfolders: the split's subfolder, recognised again;
 * - a folder whose only entry is a folder without images (an unpacked archive's root): that folder;
 * - otherwise a folder of class folders (ImageNet layout).
 */
export async function openDataset(path: string, options: OpenOptions = {}): Promise<Dataset> {
  const split = options.split ?? 'test';
  const info = await stat(path).catch((e: NodeJS.ErrnoException) => {
    throw new UserError(`cannot read the data (${fsErrorReason(e)})`, path);
  });
  noteInput(path, 'the data set', info.isDirectory());
  if (info.isFile()) {
    if (/\.tar$/i.test(path)) return openDataset(await extractTarOnce(path), options);
    if (/idx3-ubyte(\.gz)?$/i.test(path)) return IdxDataset.open(path, split, true);
    if (/\.bin$/i.test(path)) return CifarBinaryDataset.open(path, split, true);
    throw new UserError(
      'is not a dataset (expected a folder, a .tar archive, an IDX images file or a CIFAR .bin batch)',
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
  const splitFolder = findSplitFolder(path, folders, split);
  if (splitFolder) return openDataset(join(path, splitFolder), options);
  if (folders.length === 1 && fileNames.length === 0 && !(await holdsImages(join(path, folders[0]!.name)))) {
    return openDataset(join(path, folders[0]!.name), options);
  }
  return ImageFolderDataset.open(path, options.decodedCacheBytes);
}

/** Whether a folder directly holds image files, i.e. is a class folder rather than an archive's root folder. */
async function holdsImages(folder: string): Promise<boolean> {
  const names = await readdir(folder).catch(() => [] as string[]);
  return names.some((n) => IMAGE_EXTENSIONS.test(n));
}

function findSplitFolder(path: string, folders: Dirent[], split: Split): string | undefined {
  const names = new Set(folders.map((f) => f.name));
  const splitNames = [...SPLIT_FOLDERS.train, ...SPLIT_FOLDERS.test].filter((n) => names.has(n));
  if (splitNames.length === 0) return undefined;
  const found = SPLIT_FOLDERS[split].find((n) => names.has(n));
  if (!found) throw new UserError(`has no ${split} split folder (found: ${splitNames.join(', ')})`, path);
  return found;
}
