import { realpathSync, statSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { noteInput, readRegularFile } from '../run-files.js';
import type { UnlabelledDataset } from './dataset.js';
import { DEFAULT_DECODED_CACHE_BYTES } from './decoded-cache.js';
import { ImageFiles } from './image-files.js';
import { fsErrorReason } from './error-text.js';
import { compareCodeUnits, IMAGE_EXTENSIONS, linkInside } from './image-folder.js';

/** Largest list file read: 64 MiB is about a million paths. */
const MAX_LIST_BYTES = 64 << 20;

/**
 * Images without labels: the image files directly inside a folder (sorted), or the files a list names (in its
 * order). Only their paths are held; pixels are decoded on demand and, up to a byte budget, kept for reuse.
 */
export class UnlabelledImages extends ImageFiles implements UnlabelledDataset {
  readonly kind = 'unlabelled';
  readonly labelled = false;
  readonly labels = undefined;
  readonly classNames = undefined;

  private constructor(
    readonly path: string,
    /** `folder`: images directly in `path`; `list`: a text file naming them. */
    readonly source: 'folder' | 'list',
    files: readonly string[],
    cacheBytes: number,
  ) {
    super(files, cacheBytes);
  }

  /**
   * The images directly inside `root` (`names`: the entries openDataset found there). A symbolic link is
   * followed only inside the folder, as in an image folder.
   */
  static async openFolder(
    root: string,
    entries: readonly { name: string; symlink: boolean }[],
    cacheBytes = DEFAULT_DECODED_CACHE_BYTES,
  ): Promise<UnlabelledImages> {
    const realRoot = await realpath(root).catch(() => root);
    const sorted = [...entries].sort((a, b) => compareCodeUnits(a.name, b.name));
    const files: string[] = [];
    for (const { name, symlink } of sorted) {
      const file = join(root, name);
      if (symlink && !(await linkInside(realRoot, file)).isFile())
        throw new UserError('is a symbolic link to something other than an image file', file);
      files.push(file);
    }
    return new UnlabelledImages(root, 'folder', files, cacheBytes);
  }

  /**
   * A text file naming one image per line, relative to the list's folder (blank lines skipped). Every entry is
   * checked now: it must stay inside that folder (no absolute path, no `..` or symbolic link out of it), be a
   * regular file with an image extension and one name (a hard link may be to any file). Errors give the line,
   * never its text: the list may be any file.
   */
  static openList(list: string, cacheBytes = DEFAULT_DECODED_CACHE_BYTES): UnlabelledImages {
    let text: string;
    try {
      text = readRegularFile(list, MAX_LIST_BYTES).toString('utf8');
    } catch (e) {
      throw new UserError(`cannot read the list of images (${fsErrorReason(e)})`, list);
    }
    if (text.includes('\0'))
      throw new UserError('is not a text list of image paths (it holds NUL bytes)', list);
    noteInput(list, 'the list of images');
    const folder = dirname(resolve(list));
    const realFolder = realOr(folder);
    const files: string[] = [];
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (line === '') return;
      const fail = (why: string): never => {
        throw new UserError(`line ${i + 1}: ${why}`, list);
      };
      if (isAbsolute(line)) fail('an absolute path; write paths relative to the list file');
      if (!IMAGE_EXTENSIONS.test(line)) fail('names no image file (.jpg, .jpeg, .png, .webp)');
      const file = join(folder, line);
      let real: string;
      try {
        real = realpathSync(file);
      } catch (e) {
        return fail(`cannot read the image it names (${fsErrorReason(e)})`);
      }
      const rel = relative(realFolder, real);
      if (rel === '' || rel.startsWith('..') || isAbsolute(rel))
        fail("names a file outside the list's folder (paths and links are followed only inside it)");
      const st = statSync(real);
      if (!st.isFile()) fail('names something other than a regular file');
      if (st.nlink > 1) fail(`names a hard link (the file has ${st.nlink} names); copy it into the data set`);
      files.push(file);
    });
    if (files.length === 0) throw new UserError('the list names no images', list);
    return new UnlabelledImages(list, 'list', files, cacheBytes);
  }
}

function realOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}
