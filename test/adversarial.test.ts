/**
 * Bad and hostile input, generated (test/adversarial-cases.ts): for every case, exit code 2 and exactly one
 * line on stderr, no stack trace, no raw control characters printed, and no file the case did not own
 * changed: every input keeps its sha256, nothing appears outside the output folder, and no partial output
 * (nor a temporary) appears in it. Then a seeded fuzz of byte mutations of a real model.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  BASE_MODEL,
  CHECKPOINT_ARGS,
  copyModelInto,
  fuzzCommand,
  generateCases,
  mutateModel,
  makeBase,
  type AdversarialCase,
  type CaseDirs,
} from './adversarial-cases.js';
import { REPO, runCli, tmpDir, type CliRun } from './helpers.js';

const ROOT = tmpDir('adapruner-adversarial-');
const BASE = path.join(ROOT, 'base');
/** Where the data-set cache goes for ordinary cases ($TMPDIR), outside what the checks watch. */
const CACHE_TMP = path.join(ROOT, 'tmp');
let base: { data: string; dataTar: string; checkpoint: string };

before(async () => {
  fs.mkdirSync(BASE);
  fs.mkdirSync(CACHE_TMP);
  const { data, dataTar } = await makeBase(BASE);
  const model = copyModelInto(BASE);
  const checkpoint = path.join(BASE, 'ck.onnx.ckpt');
  const r = await runCli([
    'finetune',
    model,
    '--data',
    data,
    ...CHECKPOINT_ARGS,
    '--stop-after-epoch',
    '1',
    '--checkpoint',
    checkpoint,
    '-o',
    path.join(BASE, 'ck.onnx'),
  ]);
  assert.equal(r.code, 0, r.stderr);
  base = { data, dataTar, checkpoint };
});

after(() => {
  fs.rmSync(ROOT, { recursive: true, force: true });
});

/** Every entry under `dir`: type, and sha256 for files, link target for links (mode for folders). */
function snapshot(dir: string, into = new Map<string, string>()): Map<string, string> {
  for (const name of fs.readdirSync(dir)) {
    const file = path.join(dir, name);
    const st = fs.lstatSync(file);
    if (st.isSymbolicLink()) into.set(file, `link ${fs.readlinkSync(file)}`);
    else if (st.isDirectory()) {
      into.set(file, `dir ${st.mode} ${st.uid}`);
      snapshot(file, into);
    } else if (st.isFile())
      into.set(file, `file ${createHash('sha256').update(fs.readFileSync(file)).digest('hex')}`);
    else into.set(file, `other ${st.mode}`);
  }
  return into;
}

function changes(before: Map<string, string>, after: Map<string, string>, ignore: string): string[] {
  const out: string[] = [];
  for (const [f, v] of before)
    if (after.get(f) !== v && !f.startsWith(ignore + path.sep))
      out.push(`${after.has(f) ? 'changed' : 'removed'} ${f}`);
  for (const f of after.keys())
    if (!before.has(f) && !f.startsWith(ignore + path.sep)) out.push(`created ${f}`);
  return out;
}

const STACK = /^\s+at .+(:\d+:\d+\)?|\(native\)|<anonymous>\)?)$/m;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f\x9b]/;

async function run(c: AdversarialCase, args: string[], env: Record<string, string>): Promise<CliRun> {
  if (c.isolate) {
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', path.join(REPO, 'bin', 'adapruner.ts'), ...args],
      {
        cwd: REPO,
        encoding: 'utf8',
        timeout: 60_000,
        // The case's own variables only: the default TMPDIR keeps tsx's compile cache warm between children.
        env: { ...process.env, ...(c.env ? env : {}) },
      },
    );
    return {
      code: r.status ?? -1,
      stdout: r.stdout,
      stderr: r.stderr + (r.status === null ? '\n(hung: killed after 60 s)' : ''),
    };
  }
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  let timer: NodeJS.Timeout | undefined;
  try {
    const hung = new Promise<CliRun>((resolve) => {
      timer = setTimeout(
        () => resolve({ code: -1, stdout: '', stderr: '(hung: no answer after 60 s)\n' }),
        60_000,
      );
    });
    return await Promise.race([runCli(args), hung]);
  } catch (e) {
    return { code: 1, stdout: '', stderr: String((e as Error)?.stack ?? e) };
  } finally {
    clearTimeout(timer);
    for (const [k, v] of Object.entries(saved))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
}

/** PruneLog's half-minute note in a log: `adapruner: STAGE... (12 s into it, 40 s in all)`. */
const PROGRESS_NOTE = /^adapruner: .*\.\.\. \((pass \d+\/\d+[^;]*; )?\d+ s into it, \d+ s in all\)$/;

/** What is wrong with one run; empty when it behaved. */
function judge(c: AdversarialCase, r: CliRun, changed: string[]): string[] {
  const problems: string[] = [];
  const passed = (c.mayPass || c.mustPass) && r.code === 0;
  if (c.mustPass && r.code !== 0) problems.push(`exit code ${r.code}, not 0`);
  else if (r.code !== 2 && !passed) problems.push(`exit code ${r.code}`);
  if (c.forbid?.test(r.stderr) || c.forbid?.test(r.stdout)) problems.push('quotes the content of a file');
  if (!passed) {
    // A prune that runs past half a minute (a loaded machine) notes its stage: progress, not a second error line.
    const lines = r.stderr.split('\n').filter((l) => l !== '' && !PROGRESS_NOTE.test(l));
    if (lines.length !== 1 || !r.stderr.endsWith('\n')) problems.push(`${lines.length} lines on stderr`);
    else if (!lines[0]!.startsWith('adapruner: ')) problems.push('error line lacks the adapruner: prefix');
    if (changed.length) problems.push(`files touched: ${changed.slice(0, 4).join(', ')}`);
  }
  // In-process, stdout also carries the test runner's own messages; a child's stdout is the CLI's alone.
  if (STACK.test(r.stderr) || (c.isolate && STACK.test(r.stdout))) problems.push('stack trace');
  if (CONTROL.test(r.stderr) || (c.isolate && CONTROL.test(r.stdout)))
    problems.push('raw control characters printed');
  return problems;
}

// ADVERSARIAL_SKIP (a regular expression over case names) leaves cases out: counting the failures of old code
// needs it for the cases that made that code allocate until the machine ran out of memory.
const skip = process.env.ADVERSARIAL_SKIP ? new RegExp(process.env.ADVERSARIAL_SKIP) : undefined;
const only = process.env.ADVERSARIAL_ONLY ? new RegExp(process.env.ADVERSARIAL_ONLY) : undefined;
const CASES = generateCases().filter(
  (c) => !skip?.test(`${c.klass}: ${c.name}`) && (!only || only.test(`${c.klass}: ${c.name}`)),
);
const failures: { c: AdversarialCase; problems: string[] }[] = [];

test(`${CASES.length} generated bad-input cases: exit 2, one line, nothing touched`, async (t) => {
  if (!only) assert.ok(CASES.length >= 200, `${CASES.length} cases`);
  let n = 0;
  for (const c of CASES) {
    const root = path.join(ROOT, `case-${n++}`);
    const dirs: CaseDirs = {
      root,
      in: path.join(root, 'in'),
      out: path.join(root, 'out'),
      model: '',
      data: base.data,
      dataTar: base.dataTar,
      checkpoint: base.checkpoint,
    };
    fs.mkdirSync(dirs.in, { recursive: true });
    fs.mkdirSync(dirs.out);
    dirs.model = copyModelInto(dirs.in);
    await t.test(`${c.klass}: ${c.name}`, async () => {
      const args = await c.setup(dirs);
      const env = { TMPDIR: CACHE_TMP, ...c.env?.(dirs) };
      const before = snapshot(root, snapshot(BASE));
      const r = await run(c, args, env);
      const after = snapshot(root, snapshot(BASE));
      // With exit 0 (a hostile but valid input), outputs may land in the output folder, and nowhere else.
      const mayWrite = (c.mayPass || c.mustPass) && r.code === 0;
      const changed = changes(before, after, mayWrite ? dirs.out : '\0');
      const problems = judge(c, r, changed);
      if (mayWrite) {
        const elsewhere = changes(before, after, dirs.out);
        if (elsewhere.length) problems.push(`files touched: ${elsewhere.slice(0, 4).join(', ')}`);
      }
      if (problems.length) failures.push({ c, problems });
      assert.deepEqual(problems, [], `adapruner ${args.join(' ')}\n--- stderr:\n${r.stderr.slice(0, 2000)}`);
    });
    fs.rmSync(root, { recursive: true, force: true });
  }
  const byClass: Record<string, number> = {};
  for (const f of failures) byClass[f.c.klass] = (byClass[f.c.klass] ?? 0) + 1;
  t.diagnostic(`cases ${CASES.length}, failures ${failures.length} ${JSON.stringify(byClass)}`);
});

test('1,000 seeded byte mutations of a real model: inspect and prune either work or fail in one line', async () => {
  const original = fs.readFileSync(BASE_MODEL);
  const dir = path.join(ROOT, 'fuzz');
  fs.mkdirSync(dir);
  const file = path.join(dir, 'fuzz.onnx');
  const outcomes = { ok: 0, refused: 0 };
  const bad: string[] = [];
  for (let i = 0; i < 1000; i++) {
    fs.writeFileSync(file, mutateModel(original, i));
    const args = fuzzCommand(file, i);
    const r = await run({ klass: 'fuzz', name: String(i), setup: () => args }, args, {});
    if (r.code === 0) outcomes.ok++;
    else if (r.code === 2 && r.stderr.split('\n').filter(Boolean).length === 1 && !STACK.test(r.stderr))
      outcomes.refused++;
    else bad.push(`mutation ${i} (${args[0]}): exit ${r.code}: ${r.stderr.slice(0, 300)}`);
  }
  assert.deepEqual(bad, [], `${bad.length} of 1000 failed`);
  assert.ok(outcomes.refused > 50 && outcomes.ok > 50, JSON.stringify(outcomes));
});
