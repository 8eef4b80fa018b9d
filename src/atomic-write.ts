import fs from 'node:fs';
import path from 'node:path';

/**
 * A hidden temporary name beside `file`: same folder, so the final rename is atomic (never across devices);
 * pid and a random suffix, so concurrent writers never share one.
 */
export function tempPathFor(file: string): string {
  return path.join(
    path.dirname(path.resolve(file)),
    `.${path.basename(file)}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`,
  );
}

/** Writes `chunks` to a new file (refusing to reuse an existing name) and syncs it to disk. */
export function writeChunksSync(file: string, chunks: readonly Uint8Array[]): void {
  const fd = fs.openSync(file, 'wx');
  try {
    for (const c of chunks) {
      let done = 0;
      while (done < c.length) done += fs.writeSync(fd, c, done, c.length - done);
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
  const chunks = typeof data === 'string' ? [Buffer.from(data)] : data instanceof Uint8Array ? [data] : data;
  const tmp = tempPathFor(file);
  try {
    writeChunksSync(tmp, chunks);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
