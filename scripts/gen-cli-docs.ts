import fs from 'node:fs';
import path from 'node:path';
import { renderCliDocs } from '../src/cli/cli-docs.js';

const target = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'docs', 'cli.md');
fs.writeFileSync(target, await renderCliDocs());
console.log(`wrote ${path.relative(process.cwd(), target)}`);
