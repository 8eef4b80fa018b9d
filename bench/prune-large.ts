import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `npm run bench -- prune-large`: peak RSS of a data-free prune (to 50% MACs, validated in onnxruntime) of a
 * synthetic Conv-BN-ReLU chain of LARGE_MODEL_MB megabytes (default 1536), as a ratio to the file's size.
 * The target of issue 12 is at most 2.5x. Model and output live in a temporary folder, removed afterwards.
 */
export async function run(): Promise<object> {
  const megabytes = Number(process.env.LARGE_MODEL_MB ?? 1536);
  const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'prune-large-child.ts');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-large-'));
  const node = (...args: string[]): string =>
    execFileSync(process.execPath, ['--import', 'tsx', child, ...args], {
      encoding: 'utf8',
      maxBuffer: 1 << 20,
    });
  try {
    const model = path.join(dir, 'large.onnx');
    let t = performance.now();
    node('build', model, String(megabytes));
    const buildSeconds = (performance.now() - t) / 1000;
    const fileBytes = fs.statSync(model).size;
    t = performance.now();
    const result = JSON.parse(node('prune', model, path.join(dir, 'pruned.onnx')).trim().split('\n').at(-1)!);
    const pruneSeconds = (performance.now() - t) / 1000;
    return {
      fileMB: +(fileBytes / 2 ** 20).toFixed(1),
      exitCode: result.code,
      peakRssMB: +(result.maxRssBytes / 2 ** 20).toFixed(1),
      peakRssOverFile: +(result.maxRssBytes / fileBytes).toFixed(2),
      target: 2.5,
      buildSeconds: +buildSeconds.toFixed(1),
      pruneSeconds: +pruneSeconds.toFixed(1),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
