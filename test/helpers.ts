import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const FIXTURES = path.join(REPO, 'fixtures');
/** The read-only data folder beside the checkout (absent on a user's fresh clone). */
export const SHARED = path.resolve(REPO, '..', 'shared');

export function sharedModel(name: string): string {
  return path.join(SHARED, 'models', name);
}

/** `{ skip: reason }` for node:test when a shared file is missing, so the skip is visible in the summary. */
export function needsShared(...relative: string[]): { skip: string | false } {
  for (const r of relative) {
    if (!fs.existsSync(path.join(SHARED, r)))
      return { skip: `../shared/${r} is absent (shared data not present)` };
  }
  return { skip: false };
}

/** The BN-kept fixture models exported by fixtures/make_fixtures.py. */
export const FIXTURE_MODELS = [
  'resnet_a',
  'resnet_b',
  'mobilenetv2',
  'vgg',
  'densenet',
  'senet',
  'fmnist_cnn',
] as const;

export function fixture(name: string): string {
  return path.join(FIXTURES, name);
}

export function tmpDir(prefix = 'adapruner-test-'): string {
  return fs.mkdtempSync(path.join(fs.realpathSync(process.env.TMPDIR ?? '/tmp'), prefix));
}
