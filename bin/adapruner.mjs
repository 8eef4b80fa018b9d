#!/usr/bin/env node
// The `adapruner` command. In a checkout (sources and the dev dependency tsx present) it runs the TypeScript
// sources through tsx, so `npx adapruner` works right after `npm install` with no build step and never runs a
// stale dist/. In an installed package (no tsx) it runs the compiled dist/ that `npm run build` wrote.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const source = fileURLToPath(new URL('./adapruner.ts', import.meta.url));
const compiled = new URL('../dist/bin/adapruner.js', import.meta.url);

async function tsxRegister() {
  try {
    return (await import('tsx/esm/api')).register;
  } catch {
    return undefined;
  }
}

const register = existsSync(source) ? await tsxRegister() : undefined;
if (register) {
  register();
  await import(source);
} else if (existsSync(fileURLToPath(compiled))) {
  await import(compiled.href);
} else {
  console.error(
    'adapruner: neither tsx (a dev dependency) nor a build (dist/) is here: run `npm install` or `npm run build`',
  );
  process.exitCode = 1;
}
