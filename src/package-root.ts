import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: { root: string; version: string } | undefined;

/**
 * The folder of adapruner's own package.json, whether running from sources (tsx) or from dist/: bundled files
 * (the example's model and data) and the tool version are found relative to it.
 */
export function packageInfo(): { root: string; version: string } {
  if (cached) return cached;
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    const f = path.join(dir, 'package.json');
    if (fs.existsSync(f)) {
      const pkg = JSON.parse(fs.readFileSync(f, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'adapruner') return (cached = { root: dir, version: pkg.version ?? 'unknown' });
    }
    if (path.dirname(dir) === dir)
      throw new Error("cannot find adapruner's package.json above its own files");
  }
}
