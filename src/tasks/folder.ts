import { existsSync, readdirSync, statSync } from 'node:fs';
import { opendir, readdir } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import type { Dataset } from '../data/dataset.js';
import { DEFAULT_DECODED_CACHE_BYTES } from '../data/decoded-cache.js';
import { ImageFiles } from '../data/image-files.js';
import { fsErrorReason } from '../data/error-text.js';
import { compareCodeUnits, IMAGE_EXTENSIONS } from '../data/image-folder.js';
import { UserError } from '../errors.js';
import { noteInput } from '../run-files.js';
import type { TaskName } from './types.js';

/** The folder of labels beside the images: YOLO text files for detect, PNG masks or maps otherwise. */
export function labelFolderName(task: TaskName): 'labels' | 'masks' {
  return task === 'detect' ? 'labels' : 'masks';
}

/**
 * A folder of images for a task (docs/tasks.md): `DIR/images/` (or the images directly in `DIR`), and beside
 * them `DIR/labels/STEM.txt` (detect) or `DIR/masks/STEM.png` (segment, dense), the same stem as the image.
 * `images/val` with `labels/val` (ultralytics' split folders) are read for `--split test`, `images/train` for
 * train. It serves the images as a Dataset whose class labels are all 0 (the task's labels are files).
 */
export class TaskImageFolder extends ImageFiles implements Dataset {
  readonly kind = 'image-folder';
  readonly classNames: readonly string[] = ['image'];
  readonly labels: Int32Array;

  private constructor(
    readonly path: string,
    files: readonly string[],
    /** The label file of each image, or undefined where there is none. */
    readonly labelFiles: readonly (string | undefined)[],
    /** The label folder, when there is one. */
    readonly labelFolder: string | undefined,
    cacheBytes: number,
  ) {
    super(files, cacheBytes);
    this.labels = new Int32Array(files.length);
  }

  static async open(
    root: string,
    task: TaskName,
    split: 'train' | 'test' = 'test',
    cacheBytes = DEFAULT_DECODED_CACHE_BYTES,
  ): Promise<TaskImageFolder> {
    if (!isFolder(root))
      throw new UserError('is not a folder of images (expected DIR/images/ or images in DIR)', root);
    noteInput(root, 'the data set', true);
    let imageDir = isFolder(join(root, 'images')) ? join(root, 'images') : root;
    let labelDir = join(root, labelFolderName(task));
    const names = await imageNames(imageDir);
    if (names.length === 0) {
      const sub = (split === 'train' ? ['train'] : ['test', 'val', 'validation']).find((s) =>
        isFolder(join(imageDir, s)),
      );
      if (sub === undefined) throw new UserError('has no images (.jpg, .jpeg, .png, .webp)', imageDir);
      imageDir = join(imageDir, sub);
      labelDir = join(labelDir, sub);
      names.push(...(await imageNames(imageDir)));
      if (names.length === 0) throw new UserError('has no images (.jpg, .jpeg, .png, .webp)', imageDir);
    }
    const extension = task === 'detect' ? '.txt' : '.png';
    const hasLabelDir = isFolder(labelDir);
    const present = hasLabelDir
      ? new Set(await readdir(labelDir).catch(() => [] as string[]))
      : new Set<string>();
    const labelFiles = names.map((n) => {
      const label = basename(n, extname(n)) + extension;
      return present.has(label) ? join(labelDir, label) : undefined;
    });
    return new TaskImageFolder(
      root,
      names.map((n) => join(imageDir, n)),
      labelFiles,
      hasLabelDir ? labelDir : undefined,
      cacheBytes,
    );
  }

  /** Whether a folder directly holds image files (not hidden ones). */
  static holdsImages(folder: string): boolean {
    try {
      return readdirSync(folder).some((n) => IMAGE_EXTENSIONS.test(n) && !n.startsWith('.'));
    } catch {
      return false;
    }
  }

  /** Images that have a label file. */
  get labelledCount(): number {
    return this.labelFiles.filter((f) => f !== undefined).length;
  }
}

function isFolder(path: string): boolean {
  try {
    return existsSync(path) && statSync(path).isDirectory();
  } catch {
    return false;
  }
}

async function imageNames(folder: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of await opendir(folder, { bufferSize: 256 }))
      if (e.isFile() && IMAGE_EXTENSIONS.test(e.name) && !e.name.startsWith('.')) names.push(e.name);
  } catch (e) {
    throw new UserError(`cannot read the folder (${fsErrorReason(e)})`, folder);
  }
  return names.sort(compareCodeUnits);
}
