import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `npm run bench -- NAME`: runs bench/NAME.ts's exported `run()` and prints its figures as JSON and as a
 * readable summary; flags after NAME are the bench's own. No name: every bench/*.ts that exports `run()`.
 */
const HERE = path.dirname(fileURLToPath(import.meta.url));
const name = process.argv[2];
if (name !== undefined && !/^[\w-]+$/.test(name)) {
  console.error('usage: npm run bench [-- <name>]   (a file bench/<name>.ts exporting run())');
  process.exit(2);
}
const names =
  name !== undefined
    ? [name]
    : fs
        .readdirSync(HERE)
        .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.endsWith('-child.ts'))
        .map((f) => f.slice(0, -3))
        .sort();

const results: Record<string, object> = {};
for (const n of names) {
  const bench = (await import(`./${n}.ts`)) as { run?: () => Promise<object> };
  if (typeof bench.run !== 'function') {
    if (name !== undefined) throw new Error(`bench/${n}.ts exports no run()`);
    continue;
  }
  results[n] = await bench.run();
  console.error(`\n== ${n} ==\n${summary(results[n]!)}`);
}
console.log(JSON.stringify(name !== undefined ? results[name] : results, null, 2));

/** One `key: value` line per figure, nested objects indented. */
function summary(figures: object, indent = ''): string {
  return Object.entries(figures)
    .map(([k, v]) =>
      v !== null && typeof v === 'object' && !Array.isArray(v)
        ? `${indent}${k}:\n${summary(v as object, `${indent}  `)}`
        : `${indent}${k}: ${Array.isArray(v) ? v.join(', ') : String(v)}`,
    )
    .join('\n');
}
