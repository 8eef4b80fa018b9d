import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'adapruner.mjs');

/**
 * One `adapruner` command in its own process, for the benches that time whole runs: its stdout and wall
 * seconds; stderr passes through (a label-free prune takes minutes and shows its progress there). A failure
 * throws with the command line.
 */
export function cli(args: string[]): { stdout: string; seconds: number } {
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`adapruner ${args.join(' ')}: exit ${r.status} (its stderr is above)`);
  return { stdout: r.stdout, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
}
