import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { REPO } from './helpers.js';

test('no function in src/ is over 150 lines (scripts/function-lengths.ts)', () => {
  let out = '';
  try {
    out = execFileSync(
      process.execPath,
      ['--import', 'tsx', path.join(REPO, 'scripts', 'function-lengths.ts'), '150'],
      {
        cwd: REPO,
        encoding: 'utf8',
      },
    );
  } catch (e) {
    assert.fail(`functions over 150 lines:\n${(e as { stdout?: string }).stdout ?? e}`);
  }
  assert.equal(out.trim(), '');
});
