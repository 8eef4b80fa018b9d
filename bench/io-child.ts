/**
 * One measured task in a fresh process, so its peak RSS is its own: `io IN OUT` (loadModel + saveModel),
 * `copy IN OUT` (read + write + fsync, the baseline), or `idle` (just the imports, for reference).
 * Prints one JSON line: { ms, maxRssBytes }.
 */
import fs from 'node:fs';
import { loadModel, saveModel } from '../src/ir/index.js';

const [mode, input, output] = process.argv.slice(2);
const start = performance.now();
if (mode === 'io') {
  saveModel(loadModel(input!), output!);
} else if (mode === 'copy') {
  const bytes = fs.readFileSync(input!);
  const fd = fs.openSync(output!, 'w');
  fs.writeSync(fd, bytes);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
} else if (mode !== 'idle') {
  throw new Error(`unknown mode ${mode}`);
}
const ms = performance.now() - start;
console.log(JSON.stringify({ ms, maxRssBytes: peakRss() }));

/**
 * Peak RSS of this process. On Linux, getrusage's maxRSS survives exec and so includes the parent's memory at
 * fork time (the benchmark's parent holds the whole model); /proc's VmHWM belongs to this program alone.
 */
function peakRss(): number {
  try {
    const hwm = /VmHWM:\s*(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (hwm) return Number(hwm[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024; // kilobytes
}
