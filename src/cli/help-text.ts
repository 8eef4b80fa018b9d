import { main } from './main.js';

/** Runs the CLI with `args` and returns what it printed to stdout (used to generate docs/cli.md). */
export async function captureStdout(args: string[]): Promise<{ code: number; out: string }> {
  const chunks: string[] = [];
  const originalLog = console.log;
  const originalWrite = process.stdout.write.bind(process.stdout);
  console.log = (...parts: unknown[]) => {
    chunks.push(`${parts.map(String).join(' ')}\n`);
  };
  process.stdout.write = ((chunk: string | Uint8Array) => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
    return true;
  }) as typeof process.stdout.write;
  try {
    const code = await main(args);
    return { code, out: chunks.join('') };
  } finally {
    console.log = originalLog;
    process.stdout.write = originalWrite;
  }
}
