import fs from 'node:fs';
import path from 'node:path';
import { noteInput } from '../run-files.js';

/**
 * Where an externally stored tensor's bytes live, checked against the classes of path bugs ONNX's own loader
 * had CVEs for: absolute locations, `..` components, symbolic links, paths that resolve outside the model's
 * folder, and hard links (a second name for a file anywhere). The same checks guard writing.
 */
export function resolveExternalLocation(modelDir: string, location: string): string {
  if (location === '') throw new Error('external data location is empty');
  if (location.includes('\0')) throw new Error(`external data location '${location}' contains a NUL byte`);
  if (path.isAbsolute(location) || path.win32.isAbsolute(location) || /^[a-zA-Z]:/.test(location))
    throw new Error(
      `external data location '${location}' is absolute; it must be relative to the model's folder`,
    );
  const parts = location.split(/[\\/]+/);
  if (parts.includes('..')) throw new Error(`external data location '${location}' contains '..'`);
  const base = fs.existsSync(modelDir) ? fs.realpathSync(modelDir) : path.resolve(modelDir);
  const full = path.resolve(base, location);
  if (!isInside(base, full))
    throw new Error(`external data location '${location}' resolves outside the model's folder`);
  // Every existing component below the model folder must be a real directory or file, not a link.
  let cursor = base;
  for (const part of parts.filter((p) => p !== '' && p !== '.')) {
    cursor = path.join(cursor, part);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(cursor);
    } catch {
      break; // not created yet (writing)
    }
    if (st.isSymbolicLink())
      throw new Error(`external data location '${location}' goes through a symbolic link`);
  }
  if (fs.existsSync(full)) {
    const real = fs.realpathSync(full);
    if (!isInside(base, real))
      throw new Error(`external data location '${location}' resolves outside the model's folder`);
    const st = fs.lstatSync(full);
    if (!st.isFile()) throw new Error(`external data location '${location}' is not a regular file`);
    if (st.nlink > 1)
      throw new Error(`external data location '${location}' is a hard link (${st.nlink} names for one file)`);
  }
  return full;
}

function isInside(dir: string, file: string): boolean {
  const rel = path.relative(dir, file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

export interface ExternalEntry {
  location: string;
  offset: number;
  length: number | undefined;
}

export function parseExternalEntries(entries: Map<string, string>, tensorName: string): ExternalEntry {
  const location = entries.get('location');
  if (location === undefined) throw new Error(`tensor '${tensorName}' is external but has no location`);
  const num = (key: string): number | undefined => {
    const s = entries.get(key);
    if (s === undefined) return undefined;
    if (!/^\d+$/.test(s)) throw new Error(`tensor '${tensorName}' has an invalid external ${key} '${s}'`);
    const n = Number(s);
    if (!Number.isSafeInteger(n))
      throw new Error(`tensor '${tensorName}' has an external ${key} out of range`);
    return n;
  };
  return { location, offset: num('offset') ?? 0, length: num('length') };
}

const CHUNK_BYTES = 1 << 30;

/** Reads one tensor's bytes from its external file, after the location checks. */
export function readExternal(
  modelDir: string,
  entries: Map<string, string>,
  tensorName: string,
  expectedBytes: number,
): Uint8Array {
  const e = parseExternalEntries(entries, tensorName);
  const file = resolveExternalLocation(modelDir, e.location);
  if (e.length !== undefined && e.length !== expectedBytes)
    throw new Error(
      `tensor '${tensorName}': external length ${e.length} does not match its dims (${expectedBytes} bytes)`,
    );
  let fd: number;
  try {
    // O_NOFOLLOW: a link swapped in after the checks above is refused rather than followed.
    // O_NONBLOCK: a FIFO is refused below instead of blocking the open.
    fd = fs.openSync(
      file,
      fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0),
    );
  } catch (err) {
    throw new Error(
      `cannot read external data '${e.location}' of tensor '${tensorName}': ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.nlink > 1)
      throw new Error(
        `external data '${e.location}' of tensor '${tensorName}' is not a single-named regular file`,
      );
    noteInput(file, 'external data');
    const size = st.size;
    if (e.offset + expectedBytes > size)
      throw new Error(
        `tensor '${tensorName}': external data '${e.location}' is ${size} bytes, too short for offset ${e.offset} + ${expectedBytes}`,
      );
    const out = Buffer.allocUnsafe(expectedBytes);
    let done = 0;
    while (done < expectedBytes) {
      // At most 1 GiB per call: one read of a tensor of 2 GiB or more is a RangeError in Node.
      const n = fs.readSync(fd, out, done, Math.min(expectedBytes - done, CHUNK_BYTES), e.offset + done);
      if (n === 0) throw new Error(`tensor '${tensorName}': external data '${e.location}' ended early`);
      done += n;
    }
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } finally {
    fs.closeSync(fd);
  }
}
