import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { REPO, tmpDir } from './helpers.js';

/**
 * The package as a dependency: a fresh checkout (the files git tracks, plus new ones it does not ignore; no
 * dist/) is packed with a plain `npm pack`, the tarball is installed into an empty project without network,
 * and the README's first library example and `npx adapruner --help` run there.
 */

const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const NPX = process.platform === 'win32' ? 'npx.cmd' : 'npx';
/** No registry is reached: every dependency comes from npm's cache, which the repository's `npm ci` filled. */
const OFFLINE_ENV = { ...process.env, npm_config_offline: 'true', ONNXRUNTIME_NODE_INSTALL: 'skip' };

function run(cmd: string, args: string[], cwd: string): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { cwd, env: OFFLINE_ENV, encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** A fresh clone of the working tree: tracked and new unignored files, node_modules linked for the build. */
function freshCheckout(): string {
  const dir = path.join(tmpDir('adapruner-pack-'), 'adapruner');
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: REPO,
    encoding: 'utf8',
  })
    .split('\0')
    .filter((f) => f && fs.existsSync(path.join(REPO, f)) && fs.statSync(path.join(REPO, f)).isFile());
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.copyFileSync(path.join(REPO, f), path.join(dir, f));
  }
  fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  return dir;
}

/**
 * An empty project that depends on the tarball, with a lockfile whose other entries are the repository's
 * production dependencies: `npm ci --offline` then resolves every one of them from npm's cache.
 */
function consumerProject(tarball: string): string {
  const dir = tmpDir('adapruner-consumer-');
  const name = path.basename(tarball);
  fs.copyFileSync(tarball, path.join(dir, name));
  const lock = JSON.parse(fs.readFileSync(path.join(REPO, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, Record<string, unknown> & { dev?: boolean }>;
  };
  const root = lock.packages['']!;
  const integrity = `sha512-${crypto.createHash('sha512').update(fs.readFileSync(tarball)).digest('base64')}`;
  const packages: Record<string, unknown> = {
    '': { name: 'consumer', dependencies: { adapruner: `file:${name}` } },
    'node_modules/adapruner': {
      version: root.version,
      resolved: `file:${name}`,
      integrity,
      license: root.license,
      dependencies: root.dependencies,
      bin: root.bin,
      engines: root.engines,
    },
  };
  for (const [key, entry] of Object.entries(lock.packages))
    if (key.startsWith('node_modules/') && !entry.dev) packages[key] = entry;
  const pkg = {
    name: 'consumer',
    private: true,
    type: 'module',
    dependencies: { adapruner: `file:${name}` },
  };
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  const lockfile = { name: 'consumer', lockfileVersion: 3, requires: true, packages };
  fs.writeFileSync(path.join(dir, 'package-lock.json'), `${JSON.stringify(lockfile, null, 2)}\n`);
  return dir;
}

/** The first ```ts block of the README's "Library" section. */
function readmeLibraryExample(): string {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Library\n'));
  const m = /```ts\n([\s\S]*?)```/.exec(section);
  assert.ok(m, "README's Library section has a ts example");
  return m[1]!;
}

test('npm pack of a fresh clone installs into a new project; the README example and the CLI run there', async (t) => {
  const started = performance.now();
  const checkout = freshCheckout();
  const dirs = [path.dirname(checkout)];
  t.after(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });
  assert.ok(!fs.existsSync(path.join(checkout, 'dist')), 'a fresh clone has no dist/');
  const packed = run(NPM, ['pack', '--json'], checkout);
  assert.equal(packed.status, 0, packed.out);
  const tarball = path.join(checkout, 'adapruner-0.1.0.tgz');
  const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((f) => f.replace(/^package\//, ''));
  for (const f of [
    'dist/src/index.js',
    'dist/src/index.d.ts',
    'dist/bin/adapruner.js',
    'bin/adapruner.mjs',
    'README.md',
    'docs/cli.md',
    'fixtures/example/fmnist-cnn.onnx',
    'fixtures/example/fashion-mnist/train-images-idx3-ubyte.gz',
    'fixtures/trained/det.onnx',
    'fixtures/synthdet/images/val/00000.png',
    'fixtures/synthdet/labels/val/00000.txt',
  ])
    assert.ok(listing.includes(f), `the tarball lacks ${f}`);
  const stray = listing.filter(
    (f) =>
      // npm adds every README.md it meets (fixtures/README.md among them), whatever `files` says.
      !/^(dist\/|docs\/|fixtures\/(example|synthdet\/(images|labels))\/|fixtures\/trained\/det\.|bin\/adapruner\.mjs$|(\w+\/)?README\.md$|package\.json$)/.test(
        f,
      ) || /\.(ts|map)$/.test(f.replace(/\.d\.ts$/, '')),
  );
  assert.deepEqual(stray, [], 'the tarball ships dist/, the README, the docs and the two examples only');
  const size = fs.statSync(tarball).size;
  assert.ok(size < 7e6, `the tarball is ${size} bytes`);

  const consumer = consumerProject(tarball);
  dirs.push(consumer);
  const installed = run(NPM, ['ci', '--offline', '--no-audit', '--no-fund'], consumer);
  if (installed.status !== 0 && /ENOTCACHED|only-if-cached/.test(installed.out)) {
    t.skip(`npm's cache lacks a dependency and there is no network (run npm ci first): ${installed.out}`);
    return;
  }
  assert.equal(installed.status, 0, installed.out);

  fs.writeFileSync(path.join(consumer, 'example.mjs'), readmeLibraryExample());
  const example = run(process.execPath, ['example.mjs'], consumer);
  assert.equal(example.status, 0, example.out);
  const [before, after] = example.out.trim().split(' -> ').map(Number);
  assert.ok(before! > 0 && after! > 0 && after! <= before! * 0.5, example.out);
  assert.ok(fs.statSync(path.join(consumer, 'fmnist-cnn-slim.onnx')).size > 0);

  const help = run(NPX, ['--offline', 'adapruner', '--help'], consumer);
  assert.equal(help.status, 0, help.out);
  assert.match(help.out, /^adapruner <command> \[options\]/m);
  assert.match(help.out, /adapruner prune <model>/);
  const inspect = run(
    NPX,
    ['--offline', 'adapruner', 'inspect', 'node_modules/adapruner/fixtures/example/fmnist-cnn.onnx'],
    consumer,
  );
  assert.equal(inspect.status, 0, inspect.out);
  assert.match(inspect.out, /1,242,496/);
  // The detector example runs from the package's own fixtures, outside a checkout.
  const detect = run(NPX, ['--offline', 'adapruner', 'example', '--task', 'detect', '--json'], consumer);
  assert.equal(detect.status, 0, detect.out);
  assert.ok(fs.statSync(path.join(consumer, 'example-output', 'det-pruned.onnx')).size > 0);
  t.diagnostic(`pack, install and runs: ${((performance.now() - started) / 1000).toFixed(1)} s`);
});
