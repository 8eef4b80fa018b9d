import fs from 'node:fs';
import path from 'node:path';
import { StagedWrites } from './atomic-write.js';
import { UserError } from './errors.js';

/**
 * The files one run reads, so that no output ever lands on one of them: an output is refused when it is the
 * same file as an input by path, by resolved path (links), or by device and inode (hard links), and when it
 * would replace a file inside a data set the run reads. Loaders note what they open; the CLI resets the list per command.
 */
interface Input {
  label: string;
  file: string;
  real?: string;
  dev?: number;
  ino?: number;
  /** A folder read as a whole (a data set): nothing may be written inside it. */
  tree: boolean;
}

const inputs: Input[] = [];

export function resetRunFiles(): void {
  inputs.length = 0;
}

/** Records that this run reads `file` (or, with `tree`, everything under the folder `file`). */
export function noteInput(file: string, label: string, tree = false): void {
  const entry: Input = { label, file: path.resolve(file), tree };
  try {
    entry.real = fs.realpathSync(file);
    const st = fs.statSync(file);
    entry.dev = st.dev;
    entry.ino = st.ino;
  } catch {
    // Not there (yet): the path alone is compared.
  }
  inputs.push(entry);
}

function realOrResolved(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    // A file not created yet: its folder resolved, plus its name.
    try {
      return path.join(fs.realpathSync(path.dirname(path.resolve(file))), path.basename(file));
    } catch {
      return path.resolve(file);
    }
  }
}

function isInside(dir: string, file: string): boolean {
  const rel = path.relative(dir, file);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Refuses an output path before any work: its folder must exist, it must not be a folder or anything but a
 * regular file, and it must not be (or lie inside) anything this run reads.
 */
export function checkOutput(file: string, what = 'output'): void {
  const resolved = path.resolve(file);
  const dir = path.dirname(resolved);
  let dirStat: fs.Stats;
  try {
    dirStat = fs.statSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(
      code === 'ENOENT'
        ? `cannot write the ${what}: its folder does not exist`
        : code === 'ENOTDIR'
          ? `cannot write the ${what}: a path component is not a folder`
          : `cannot write the ${what} (${code ?? (e as Error).message})`,
      file,
    );
  }
  if (!dirStat.isDirectory())
    throw new UserError(`cannot write the ${what}: a path component is not a folder`, file);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file);
  } catch {
    st = undefined;
  }
  if (st && st.isDirectory()) throw new UserError(`cannot write the ${what}: it is a folder`, file);
  if (st && !st.isFile()) throw new UserError(`cannot write the ${what}: it is not a regular file`, file);
  const real = realOrResolved(file);
  for (const input of inputs) {
    const same =
      input.file === resolved ||
      input.real === real ||
      (st !== undefined && input.dev === st.dev && input.ino === st.ino);
    if (same && !input.tree)
      throw new UserError(
        `refusing to write the ${what} over ${input.label} '${input.file}', which this run reads; choose another path`,
        file,
      );
    // A new file may go into a data set's folder; an existing one there may be data the run reads.
    if (input.tree && st && (isInside(input.file, resolved) || (input.real && isInside(input.real, real))))
      throw new UserError(
        `refusing to write the ${what} over a file of ${input.label} '${input.file}', which this run reads; choose another path`,
        file,
      );
  }
}

/**
 * The outputs of one command: staged as temporaries while the work finishes, checked once more against
 * everything the run read, then renamed into place together (or none of them, on any failure).
 */
export class RunOutputs {
  readonly staged = new StagedWrites();
  readonly files: string[] = [];

  /** Stages `data` for `file`; call commit() to put everything in place. */
  write(file: string, data: string | Uint8Array | readonly Uint8Array[], what = 'output'): void {
    checkOutput(file, what);
    this.guard(file, () => this.staged.stage(file, data));
    this.files.push(file);
  }

  commit(): void {
    this.guard(this.files[0] ?? '', () => {
      for (const t of this.staged.targets) checkOutput(t);
      this.staged.commit();
    });
  }

  abort(): void {
    this.staged.abort();
  }

  private guard(file: string, work: () => void): void {
    try {
      work();
    } catch (e) {
      this.staged.abort();
      if (e instanceof UserError) throw e;
      const err = e as NodeJS.ErrnoException;
      throw new UserError(`cannot write: ${err.code ?? err.message}`, err.path ?? file);
    }
  }
}

/**
 * Reads a whole regular file. It is opened without blocking and checked on the open descriptor, so a FIFO,
 * a device or a folder (also one swapped in after a check) is refused instead of hanging or never ending.
 * Errors are plain Errors with an errno-like `code` or a reason; callers word them.
 */
export function readRegularFile(
  file: string,
  maxBytes = 2 ** 31 - 1,
  options: { singleLink?: boolean } = {},
): Buffer {
  const fd = fs.openSync(
    file,
    fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0) | (fs.constants.O_NOCTTY ?? 0),
  );
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw Object.assign(new Error('is a folder, not a file'), { code: 'EISDIR' });
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'not a regular file' });
    // A hard link can be to any file its maker could read; where links out of a folder are refused, so are these.
    if (options.singleLink && st.nlink > 1)
      throw Object.assign(new Error('a hard link'), {
        code: `a hard link (the file has ${st.nlink} names); copy it into the data set`,
      });
    if (st.size > maxBytes)
      throw Object.assign(new Error(`file is ${st.size} bytes, over the limit of ${maxBytes}`), {
        code: `${st.size} bytes, over the limit of ${maxBytes}`,
      });
    const out = Buffer.allocUnsafe(st.size);
    let done = 0;
    while (done < st.size) {
      const n = fs.readSync(fd, out, done, st.size - done, done);
      if (n === 0) break;
      done += n;
    }
    return done === st.size ? out : out.subarray(0, done);
  } finally {
    fs.closeSync(fd);
  }
}
