import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { renderCliDocs } from '../src/cli/cli-docs.js';
import { commands } from '../src/cli/commands.js';
import { REPO } from './helpers.js';

test('docs/cli.md is the current --help of every command (regenerate with npm run docs:cli)', async () => {
  const current = await renderCliDocs();
  const committed = fs.readFileSync(path.join(REPO, 'docs', 'cli.md'), 'utf8');
  assert.equal(committed, current);
});

test('every command has --help with a description and exits 0', async () => {
  const { captureStdout } = await import('../src/cli/help-text.js');
  for (const c of commands) {
    const name = String(c.command).split(' ')[0]!;
    const { code, out } = await captureStdout([name, '--help']);
    assert.equal(code, 0, name);
    assert.match(out, new RegExp(`^adapruner ${name}`), name);
    assert.ok(String(c.describe).length > 10, `${name} has a description`);
  }
});

test('the README documents every command', () => {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  for (const c of commands) {
    const name = String(c.command).split(' ')[0]!;
    assert.ok(readme.includes(`| \`${name}`), `README's command table lacks ${name}`);
  }
});
