import assert from 'node:assert/strict';
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

const madeDirs = new Set<string>();
let cleanupRegistered = false;

/**
 * A fresh temporary folder, removed when the test file's process exits (node:test runs each file in its own
 * process), so that repeated runs do not fill the machine's temp folder.
 */
export function tmpDir(prefix = 'adapruner-test-'): string {
  const dir = fs.mkdtempSync(path.join(fs.realpathSync(process.env.TMPDIR ?? '/tmp'), prefix));
  madeDirs.add(dir);
  if (!cleanupRegistered) {
    cleanupRegistered = true;
    process.on('exit', removeMadeDirs);
  }
  return dir;
}

function removeMadeDirs(): void {
  for (const dir of madeDirs) {
    try {
      // A test may leave a folder read-only on purpose; give it back its write bit so it can go.
      fs.chmodSync(dir, 0o755);
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // Cleanup is best effort: a folder a test made unremovable must not turn a passing run into a failure.
    }
  }
}

/** The shared pretrained models (../shared/models). */
export const SHARED_MODELS = [
  'resnet20-cifar10.onnx',
  'resnet32-cifar10.onnx',
  'resnet44-cifar10.onnx',
  'resnet56-cifar10.onnx',
  'resnet56-cifar10-bnfolded.onnx',
] as const;

/** Deterministic pseudo-random floats in [-1, 1) (an LCG: inputs must not depend on the run). */
export function seededFloats(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI in-process (console.log writes through process.stdout), capturing what it writes. Only string
 * writes are captured: the CLI writes text, while node's test runner reports each result to its parent as
 * binary (v8-serialized) chunks on the same stdout, which must pass through or the result is lost (a test
 * vanishes from the count) and lands in the captured text (seen as JSON.parse failing on `\x0F...`).
 */
export async function runCli(args: string[]): Promise<CliRun> {
  const { main } = await import('../src/cli/main.js');
  let stdout = '';
  let stderr = '';
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  // The CLI writes strings; the test runner's own messages to its parent are binary (serialized) chunks on the
  // same stream, and pass through untouched, so no test result is swallowed by a capture.
  const capture = (real: typeof out, append: (s: string) => void) =>
    ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      if (typeof chunk !== 'string') return (real as (...a: unknown[]) => boolean)(chunk, ...rest);
      append(chunk);
      return true;
    }) as typeof process.stdout.write;
  process.stdout.write = capture(out, (s) => (stdout += s));
  process.stderr.write = capture(err, (s) => (stderr += s));
  try {
    return { code: await main(args), stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

/**
 * max |ours - ref| / max |ref|: the largest error relative to the tensor's scale. Some gradients are zero in
 * exact arithmetic (a conv bias, or a BN shift followed by an unpadded 1x1 conv, right before a
 * BatchNormalization, which subtracts any per-channel constant): torch's float64 value is ~1e-15 and any float32
 * computation leaves the rounding of a sum over N*H*W terms. Those (|ref| < 1e-10) are measured against
 * `zeroScale`, the largest float32-vs-float64 gradient deviation torch itself showed on this model.
 */
export function relativeError(ours: Float32Array, ref: Float32Array, zeroScale: number): number {
  assert.equal(ours.length, ref.length);
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < ref.length; i++) {
    scale = Math.max(scale, Math.abs(ref[i]!));
    diff = Math.max(diff, Math.abs(ours[i]! - ref[i]!));
  }
  return scale < 1e-10 ? (diff / zeroScale) * 1e-4 : diff / scale;
}
