import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { firstLine, fsErrorReason } from './error-text.js';
import { extractTar } from './tar.js';

/**
 * Root of every cache this project keeps: a private folder per user under the system temp dir (so a
 * repository never fills with data). It must be a real folder (not a link), owned by this user and closed to
 * others; anything else there was planted and is refused rather than used or cleaned.
 */
export async function cacheRoot(): Promise<string> {
  const uid = process.getuid?.();
  const root = join(tmpdir(), uid === undefined ? 'adapruner-cache' : `adapruner-cache-${uid}`);
  await mkdir(root, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST')
      throw new UserError(`cannot create the cache folder (${fsErrorReason(e)})`, root);
  });
  const st = await lstat(root);
  const problem = !st.isDirectory()
    ? st.isSymbolicLink()
      ? 'is a symbolic link'
      : 'is not a folder'
    : uid !== undefined && st.uid !== uid
      ? `belongs to another user (uid ${st.uid})`
      : (st.mode & 0o077) !== 0
        ? `is open to other users (mode ${(st.mode & 0o777).toString(8)})`
        : undefined;
  if (problem) throw new UserError(`the cache folder ${problem}; remove it or set TMPDIR elsewhere`, root);
  return root;
}

/**
 * Extracts a tar archive once into the cache and returns that folder. The folder is named by the archive's
 * content (sha256), not its path, so a replaced archive is extracted afresh and two paths to one archive
 * share it. Extraction (src/data/tar.ts) goes to a temporary folder renamed into place when it succeeded: a folder under
 * its final name is always complete, and concurrent runs each extract and the first rename wins (the
 * others drop theirs and use it).
 */
export async function extractTarOnce(tarPath: string, name?: string): Promise<string> {
  const archive = resolve(tarPath);
  const info = await stat(archive).catch((e: unknown) => {
    throw new UserError(`cannot read the archive (${fsErrorReason(e)})`, tarPath);
  });
  if (!info.isFile()) throw new UserError('the archive is not a regular file', tarPath);
  const root = await cacheRoot();
  await sweepStaleExtractions(root);
  const hash = await sha256(archive, tarPath);
  const target = join(
    root,
    `${name ?? basename(tarPath).replace(/\.(tar|tgz|tar\.gz)$/, '')}-${hash.slice(0, 20)}`,
  );
  const existing = await lstat(target).catch(() => undefined);
  if (existing?.isDirectory()) return target;
  if (existing) throw new UserError('the cache holds something other than a folder here; remove it', target);

  const tmp = join(root, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  await mkdir(tmp, { mode: 0o700 });
  try {
    // Regular files and folders only, within a size limit; a refused archive leaves nothing behind.
    await extractTar(archive, tmp, tarPath);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e instanceof UserError ? e : new UserError(`cannot extract it (${firstLine(e)})`, tarPath);
  }
  try {
    await rename(tmp, target);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    // Another run finished the same archive first: use its folder.
    const code = (e as NodeJS.ErrnoException).code;
    if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await lstat(target)).isDirectory()) return target;
    throw new UserError(`cannot place the extracted archive in the cache (${fsErrorReason(e)})`, target);
  }
  return target;
}

async function sha256(file: string, shown: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }))
      hash.update(chunk as Buffer);
  } catch (e) {
    throw new UserError(`cannot read the archive (${fsErrorReason(e)})`, shown);
  }
  return hash.digest('hex');
}

/** Removes temporary extraction folders of runs that died mid-way. */
async function sweepStaleExtractions(root: string): Promise<void> {
  for (const entry of await readdir(root).catch(() => [] as string[])) {
    const pid = Number(/^\.tmp-(\d+)-[0-9a-f]+$/.exec(entry)?.[1]);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
      continue;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EPERM') continue;
    }
    await rm(join(root, entry), { recursive: true, force: true }).catch(() => undefined);
  }
}
