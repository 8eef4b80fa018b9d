import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BASE_MODEL, fuzzCommand, mutateModel } from '../test/adversarial-cases.js';
import { runCli } from '../test/helpers.js';

/**
 * `npm run bench -- fuzz`: 10,000 seeded byte mutations of the example model (test/adversarial.test.ts runs
 * the first 1,000). Each run of inspect (or, every tenth, a data-free prune --dry-run) must end with exit 0,
 * or exit 2 and one line on stderr; anything else (a stack trace, exit 1) is counted and listed.
 * FUZZ_RUNS overrides the count.
 */
export async function run(): Promise<object> {
  const runs = Number(process.env.FUZZ_RUNS ?? 10_000);
  const original = fs.readFileSync(BASE_MODEL);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adapruner-fuzz-'));
  const file = path.join(dir, 'fuzz.onnx');
  const outcomes = { ok: 0, refused: 0, failed: 0 };
  const failures: string[] = [];
  const started = performance.now();
  try {
    for (let i = 0; i < runs; i++) {
      fs.writeFileSync(file, mutateModel(original, i));
      const args = fuzzCommand(file, i);
      const r = await runCli(args).catch((e: unknown) => ({
        code: 1,
        stdout: '',
        stderr: String((e as Error)?.stack ?? e),
      }));
      const lines = r.stderr.split('\n').filter(Boolean);
      if (r.code === 0) outcomes.ok++;
      else if (r.code === 2 && lines.length === 1 && lines[0]!.startsWith('adapruner: ')) outcomes.refused++;
      else {
        outcomes.failed++;
        if (failures.length < 20)
          failures.push(`mutation ${i} (${args[0]}): exit ${r.code}: ${lines.join(' | ').slice(0, 200)}`);
      }
      if ((i + 1) % 1000 === 0) console.error(`fuzz: ${i + 1}/${runs} ${JSON.stringify(outcomes)}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return { runs, ...outcomes, seconds: (performance.now() - started) / 1000, failures };
}
