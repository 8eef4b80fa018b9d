#!/usr/bin/env node
import { main } from '../src/cli/main.js';

// `adapruner inspect M --layers | head`: the reader left; stop quietly, as other command-line tools do.
// Outputs are written to a temporary file and renamed, so stopping here never leaves half a file.
for (const stream of [process.stdout, process.stderr])
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  },
);
