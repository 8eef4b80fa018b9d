import { createReadStream } from 'node:fs';
import { mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { UserError } from '../errors.js';
import { firstLine, fsErrorReason } from './error-text.js';

/**
 * Extraction limits: the bytes all members may hold together, at least MIN_EXTRACT_BYTES and otherwise
 * EXPANSION times the archive's size. A plain tar never holds more than its own size; a gzip one of images
 * barely compresses, while one of zeros expands a thousandfold.
 */
const MIN_EXTRACT_BYTES = 1 << 30;
const EXPANSION = 16;

/** What the members of other types are, for the refusal. */
const OTHER_TYPES: Record<string, string> = {
  '1': 'a hard link',
  '2': 'a symbolic link',
  '3': 'a character device',
  '4': 'a block device',
  '6': 'a FIFO',
  S: 'a sparse file',
  D: 'a GNU dump folder',
  M: 'a multi-volume continuation',
  V: 'a volume label',
};

/**
 * Extracts a tar archive (plain or gzip) into `dest`, an empty folder, keeping regular files and folders only:
 * links, devices, FIFOs and sparse files are refused by name, as are absolute names and names with `..`. Member
 * sizes are checked against the limit before a byte is written. The archive is read as a stream, in adapruner's
 * own code: no `tar` program decides what lands on disk. Any failure is a UserError naming the archive; the
 * caller removes `dest`.
 */
export async function extractTar(archive: string, dest: string, shown = archive): Promise<void> {
  const size = (await stat(archive)).size;
  const limit = Math.max(MIN_EXTRACT_BYTES, EXPANSION * size);
  const head = Buffer.alloc(6);
  const fh = await open(archive, 'r');
  try {
    await fh.read(head, 0, 6, 0);
  } finally {
    await fh.close();
  }
  const compression = compressionOf(head);
  if (compression && compression !== 'gzip')
    throw new UserError(
      `is compressed with ${compression}; adapruner reads plain or gzip .tar archives`,
      shown,
    );
  const file = createReadStream(archive, { highWaterMark: 1 << 20 });
  const gunzip = compression === 'gzip' ? file.pipe(createGunzip()) : undefined;
  const reader = new ChunkReader((gunzip ?? file) as AsyncIterable<Buffer>);
  try {
    await extractMembers(reader, dest, limit, shown);
  } catch (e) {
    if (e instanceof UserError) throw e;
    const reason = (e as NodeJS.ErrnoException).code?.startsWith('Z_')
      ? `not valid gzip: ${firstLine(e)}`
      : fsErrorReason(e);
    throw new UserError(`cannot extract the archive (${reason})`, shown);
  } finally {
    gunzip?.destroy();
    file.destroy();
  }
}

function compressionOf(head: Buffer): string | undefined {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  if (head.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return undefined;
}

async function extractMembers(
  reader: ChunkReader,
  dest: string,
  limit: number,
  shown: string,
): Promise<void> {
  let total = 0;
  let longName: string | undefined;
  let paxPath: string | undefined;
  let paxSize: number | undefined;
  for (;;) {
    const block = await reader.read(512);
    if (block.length === 0 || block.every((b) => b === 0)) return; // end of archive
    if (block.length < 512) throw new UserError('the archive is truncated', shown);
    const header = parseHeader(block, shown);
    const size = paxSize ?? header.size;
    const name = longName ?? paxPath ?? header.name;
    if (header.type === 'L' || header.type === 'x' || header.type === 'g' || header.type === 'K') {
      if (size > 1 << 20) throw new UserError('an extended header is over 1 MiB', shown);
      const data = await readPadded(reader, size, shown);
      if (header.type === 'L') longName = data.toString('utf8').replace(/\0.*$/s, '');
      if (header.type === 'x') ({ path: paxPath, size: paxSize } = parsePax(data, shown));
      continue;
    }
    longName = paxPath = paxSize = undefined;
    // `tar -C dir .` names the archive's own folder `./`: nothing to extract.
    if (header.type === '5' && /^(\.\/?)+$/.test(name)) continue;
    const target = join(dest, safeName(name, shown));
    if (header.type === '5') {
      await mkdir(target, { recursive: true, mode: 0o700 });
      continue;
    }
    if (header.type !== '0' && header.type !== '\0' && header.type !== '7')
      throw new UserError(
        `holds '${name}', ${OTHER_TYPES[header.type] ?? `a member of type '${header.type}'`}; only regular files and folders are extracted`,
        shown,
      );
    total += size;
    if (total > limit)
      throw new UserError(`its members hold more than ${limit} bytes, the limit for this archive`, shown);
    await mkdir(join(target, '..'), { recursive: true, mode: 0o700 });
    const out = await open(target, 'w', 0o600);
    try {
      await copyMember(reader, out, size, shown);
    } finally {
      await out.close();
    }
  }
}

interface Header {
  name: string;
  size: number;
  type: string;
}

function parseHeader(b: Buffer, shown: string): Header {
  const text = (from: number, length: number): string =>
    b
      .subarray(from, from + length)
      .toString('utf8')
      .replace(/\0.*$/s, '');
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : b[i]!;
  if (sum !== parseOctal(b.subarray(148, 156)))
    throw new UserError('is not a tar archive (a header checksum does not match)', shown);
  const prefix = b.subarray(257, 262).toString('latin1') === 'ustar' ? text(345, 155) : '';
  const name = prefix ? `${prefix}/${text(0, 100)}` : text(0, 100);
  const field = b.subarray(124, 136);
  // GNU base-256 sizes (files of 8 GiB and more) set the top bit.
  const size = field[0]! & 0x80 ? Number(field.subarray(4).readBigUInt64BE()) : parseOctal(field);
  if (!Number.isSafeInteger(size) || size < 0) throw new UserError('a member has a damaged size', shown);
  return { name, size, type: String.fromCharCode(b[156]!) };
}

function parseOctal(field: Buffer): number {
  const t = field
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .trim();
  return t === '' ? 0 : /^[0-7]+$/.test(t) ? parseInt(t, 8) : NaN;
}

/** A pax extended header's `path` and `size` records. */
function parsePax(data: Buffer, shown: string): { path?: string; size?: number } {
  const out: { path?: string; size?: number } = {};
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const length = Number(data.subarray(at, space).toString('latin1'));
    if (space < 0 || !Number.isSafeInteger(length) || length <= 0 || at + length > data.length)
      throw new UserError('an extended (pax) header is damaged', shown);
    const record = data.subarray(space + 1, at + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    const key = record.slice(0, eq);
    if (key === 'path') out.path = record.slice(eq + 1);
    if (key === 'size') out.size = Number(record.slice(eq + 1));
    at += length;
  }
  if (out.size !== undefined && !(Number.isSafeInteger(out.size) && out.size >= 0))
    throw new UserError('an extended (pax) header gives a damaged size', shown);
  return out;
}

/** The member's name, relative and inside the archive's folder: no absolute names, no `..`, no NUL. */
function safeName(name: string, shown: string): string {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (name.startsWith('/') || parts.includes('..') || parts.length === 0 || name.includes('\0'))
    throw new UserError(`holds a member named '${name}', outside the archive's folder`, shown);
  return parts.join('/');
}

async function readPadded(reader: ChunkReader, size: number, shown: string): Promise<Buffer> {
  const data = await reader.read(size);
  if (data.length < size) throw new UserError('the archive is truncated', shown);
  await reader.read((512 - (size % 512)) % 512);
  return data;
}

async function copyMember(reader: ChunkReader, out: FileHandle, size: number, shown: string): Promise<void> {
  for (let left = size; left > 0;) {
    const piece = await reader.read(Math.min(left, 1 << 20));
    if (piece.length === 0) throw new UserError('the archive is truncated', shown);
    await out.write(piece);
    left -= piece.length;
  }
  await reader.read((512 - (size % 512)) % 512);
}

/** Exact-size reads over a stream of chunks; a short result means the stream ended. */
class ChunkReader {
  private readonly it: AsyncIterator<Buffer>;
  private pending: Buffer[] = [];
  private buffered = 0;
  private done = false;

  constructor(source: AsyncIterable<Buffer>) {
    this.it = source[Symbol.asyncIterator]();
  }

  async read(n: number): Promise<Buffer> {
    while (this.buffered < n && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else {
        this.pending.push(r.value);
        this.buffered += r.value.length;
      }
    }
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    const out = all.subarray(0, Math.min(n, all.length));
    const rest = all.subarray(out.length);
    this.pending = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}
