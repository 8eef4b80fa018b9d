import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { UserError } from '../errors.js';
import { firstLine, fsErrorReason } from './error-text.js';

const run = promisify(execFile);

/** Root of every cache this project keeps; under the system temp dir so a repository never fills with data. */
export function cacheRoot(): string {
  return join(tmpdir(), 'adapruner-cache');
}

/**
 * Extracts a tar archive once into `<cacheRoot>/<name>` and returns that folder. A marker file is written only
 * after `tar` succeeded, so an interrupted extraction is redone rather than trusted. The marker records the
 * archive's size and mtime: a replaced archive is extracted again.
 */
export async function extractTarOnce(tarPath: string, name = defaultCacheName(tarPath)): Promise<string> {
  const archive = resolve(tarPath);
  const info = await stat(archive).catch((e: unknown) => {
    throw new UserError(`cannot read the archive (${fsErrorReason(e)})`, tarPath);
  });
  const target = join(cacheRoot(), name);
  const marker = join(target, '.extracted');
  const stamp = `${archive}\n${info.size}\n${info.mtimeMs}\n`;
  const existing = await readFile(marker, 'utf8').catch(() => undefined);
  if (existing === stamp) return target;

  await rm(target, { recursive: true, force: true });
  await mkdir(target, { recursive: true });
  try {
    await run('tar', ['-xf', archive, '-C', target], { maxBuffer: 16 << 20 });
  } catch (e) {
    throw new UserError(`tar could not extract it (${firstLine(e)})`, tarPath);
  }
  await writeFile(marker, stamp);
  return target;
}

/** A cache folder name that differs for different archives with the same base name. */
function defaultCacheName(tarPath: string): string {
  const hash = createHash('sha1').update(resolve(tarPath)).digest('hex').slice(0, 8);
  return `${basename(tarPath).replace(/\.(tar|tgz|tar\.gz)$/, '')}-${hash}`;
}
