import { captureStdout } from './help-text.js';
import { commands } from './commands.js';

/** docs/cli.md: the `--help` of the tool and of every command, so the reference never drifts from the code. */
export async function renderCliDocs(): Promise<string> {
  const sections = [
    '# Command reference',
    '',
    'Generated from `--help` by `npm run docs:cli`; `test/cli-docs.test.ts` checks it is current.',
    '',
  ];
  const top = await captureStdout(['--help']);
  sections.push('## adapruner', '', '```', top.out.trimEnd(), '```', '');
  const names = commands.map((c) => String(c.command).split(' ')[0]!).sort();
  for (const name of names) {
    const help = await captureStdout([name, '--help']);
    sections.push(`## adapruner ${name}`, '', '```', help.out.trimEnd(), '```', '');
  }
  return sections.join('\n');
}
