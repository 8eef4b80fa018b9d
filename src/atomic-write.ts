import fs from 'node:fs';
import path from 'node:path';

/**
 * A hidden temporary name beside `file`: same folder, so the final rename is atomic (never across devices);
 * pid and a random suffix, so concurrent writers never share one. Temporaries that a dead process left
 * behind for the same name are swept first.
 */
export function tempPathFor(file: string): string {
  sweepStaleTemps(file);
  return path.join(
    path.dirname(path.resolve(file)),
    `.${path.basename(file)}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`,
  );
}

/**
 * Removes `.NAME.tmp-PID-*` files beside `file` whose writer is gone (a killed run cannot clean up after
 * itself). Only regular files of processes that no longer exist are removed; a live writer's are left alone.
 */
export function sweepStaleTemps(file: string): void {
  const dir = path.dirname(path.resolve(file));
  const prefix = `.${path.basename(file)}.tmp-`;
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => n.startsWith(prefix));
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(/^(\d+)-[0-9a-z]+$/.exec(name.slice(prefix.length))?.[1]);
    if (!Number.isSafeInteger(pid) || pid <= 0 || isAlive(pid)) continue;
    const stale = path.join(dir, name);
    try {
      if (fs.lstatSync(stale).isFile()) fs.rmSync(stale, { force: true });
    } catch {
      // Raced with another sweeper, or not ours to remove: leave it.
    }
  }
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Writes `chunks` to a new file (refusing to reuse an existing name) and syncs it to disk. */
export function writeChunksSync(file: string, chunks: readonly Uint8Array[]): void {
  const fd = fs.openSync(file, 'wx', 0o644);
  try {
    for (const c of chunks) {
      let done = 0;
      // At most 1 GiB per call: a single write of 2 GiB or more is a RangeError in Node.
      while (done < c.length) done += fs.writeSync(fd, c, done, Math.min(c.length - done, 1 << 30));
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes a whole file or nothing: the data goes to a temporary file that is renamed over `file` only once it
 * is complete on disk, and the temporary file is removed if anything fails.
 */
export function writeFileAtomically(file: string, data: string | Uint8Array | readonly Uint8Array[]): void {
  const tmp = tempPathFor(file);
  try {
    writeChunksSync(tmp, toChunks(data));
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

export function toChunks(data: string | Uint8Array | readonly Uint8Array[]): readonly Uint8Array[] {
  return typeof data === 'string' ? [Buffer.from(data)] : data instanceof Uint8Array ? [data] : data;
}

/**
 * Several files written as one: each is staged in a temporary beside its target, and only once all are
 * complete are they renamed into place. A failure while staging leaves no trace; a failure while renaming
 * (rare: the folder vanished) puts back what the earlier renames replaced.
 */
export class StagedWrites {
  private readonly staged: { tmp: string; target: string }[] = [];

  /** Writes `data` to a temporary for `target` now; `target` itself is touched only by commit(). */
  stage(target: string, data: string | Uint8Array | readonly Uint8Array[]): void {
    const tmp = tempPathFor(target);
    try {
      writeChunksSync(tmp, toChunks(data));
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw e;
    }
    this.staged.push({ tmp, target: path.resolve(target) });
  }

  get targets(): string[] {
    return this.staged.map((s) => s.target);
  }

  /** The temporary `target` is staged in (complete, not yet renamed), to check what will be committed. */
  stagedAt(target: string): string | undefined {
    return this.staged.find((s) => s.target === path.resolve(target))?.tmp;
  }

  commit(): void {
    const done: { target: string; backup?: string }[] = [];
    try {
      for (const s of this.staged) {
        let backup: string | undefined;
        if (fs.existsSync(s.target) && fs.lstatSync(s.target).isFile()) {
          backup = tempPathFor(s.target);
          fs.linkSync(s.target, backup);
        }
        done.push({ target: s.target, backup });
        fs.renameSync(s.tmp, s.target);
      }
    } catch (e) {
      for (const d of done.reverse()) {
        try {
          if (d.backup) fs.renameSync(d.backup, d.target);
          else fs.rmSync(d.target, { force: true });
        } catch {
          // Best effort: the original error is the one to report.
        }
      }
      this.abort();
      throw e;
    }
    for (const d of done) if (d.backup) fs.rmSync(d.backup, { force: true });
    this.staged.length = 0;
  }

  abort(): void {
    for (const s of this.staged) fs.rmSync(s.tmp, { force: true });
    this.staged.length = 0;
  }
}
