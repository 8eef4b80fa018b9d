import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { captureStdout } from '../src/cli/help-text.js';
import { commands } from '../src/cli/commands.js';
import { REPO, tmpDir } from './helpers.js';

/** `--help` of a command, every option (the expert ones included) and how many lines the plain help takes. */
async function help(name: string, all = false): Promise<string> {
  const { code, out } = await captureStdout([name, '--help', ...(all ? ['--show-hidden'] : [])]);
  assert.equal(code, 0, name);
  return out;
}

test('prune --help fits in 60 lines, under the headings Budget, Data, Recovery and Output', async () => {
  const out = await help('prune');
  const lines = out.trimEnd().split('\n');
  assert.ok(lines.length <= 60, `prune --help is ${lines.length} lines`);
  for (const heading of ['Budget:', 'Data:', 'Recovery:', 'Output:'])
    assert.match(out, new RegExp(`^${heading}$`, 'm'), heading);
  // The expert options are one flag away, and in docs/cli.md.
  const all = await help('prune', true);
  for (const flag of ['--min-fraction', '--finetune-sam', '--compensate-scope', '--width-trials'])
    assert.ok(!out.includes(flag) && all.includes(flag), flag);
});

test('every option of every command is described in one line, with no measurements in it', async () => {
  for (const c of commands) {
    const name = String(c.command).split(' ')[0]!;
    const out = await help(name, true);
    // An option line: the flags, then its description; a continuation line starts deep in the description column.
    for (const line of out.split('\n').filter((l) => /^\s+(-\w, )?--[\w-]+/.test(l))) {
      const text = line.replace(/^\s+(-\w, )?--[\w-]+\s*/, '');
      assert.ok(!/^\[/.test(text) && text.length > 0, `${name}: an option without a description: ${line}`);
    }
    if (name === 'prune' || name === 'finetune')
      assert.doesNotMatch(out, /\d+\.\d+ points|seeds|measured to|scored (lower|higher)/, name);
  }
});

test("finetune --help says where its fine-tuning defaults differ from prune's", async () => {
  const out = await help('finetune');
  assert.match(out, /--lr\s+.*prune's: 0\.05/);
  assert.match(out, /--augment\s+.*prune's: flip/);
  assert.match(out, /--nesterov\s+.*prune's: on/);
});

test('npm start fits one screen: at most 40 lines, a short summary, the timing table only with --timings', () => {
  const dir = tmpDir();
  const run = (extra: string[]) =>
    spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(REPO, 'bin', 'adapruner.ts'),
        'example',
        '-o',
        path.join(dir, 'ex.onnx'),
        ...extra,
      ],
      { cwd: REPO, encoding: 'utf8', timeout: 180_000 },
    );
  const r = run([]);
  assert.equal(r.status, 0, r.stderr);
  // npm adds four lines of its own (a blank, two `> ...` lines and a blank).
  const printed = `${r.stdout}${r.stderr}`.trimEnd().split('\n').length + 4;
  assert.ok(printed <= 40, `npm start prints ${printed} lines:\n${r.stderr}${r.stdout}`);
  assert.match(r.stdout, /^MACs:\s+1,242,496 -> [\d,]+ \(\d+\.\d\d%\)$/m);
  assert.match(r.stdout, /^params:\s+24,058 -> /m);
  assert.match(r.stdout, /^latency:/m);
  assert.match(r.stdout, /^written:\s+the (recalibrated|compensated|finetuned) model/m);
  assert.match(
    r.stdout,
    /^files:\s+.*ex\.onnx, \.report\.json, \.report\.svg, \.report\.md, ex\.preprocess\.json$/m,
  );
  const written = /^written:\s+the (\w+) model/m.exec(r.stdout)![1];
  assert.match(r.stdout, new RegExp(`^${written}\\s+\\d+\\.\\d\\d%\\s+\\d\\.\\d{4}\\s+yes$`, 'm'));
  assert.doesNotMatch(r.stdout, /seconds/);
  const timed = run(['--timings']);
  assert.equal(timed.status, 0, timed.stderr);
  assert.match(timed.stdout, /^stage\s+seconds$/m);
});
