import { captureStdout } from './help-text.js';
import { commands } from './commands.js';

/** docs/cli.md: the `--help` of the tool and of every command, so the reference never drifts from the code. */
export async function renderCliDocs(): Promise<string> {
  const sections = [
    '# Command reference',
    '',
    'Generated from `--help --show-hidden` by `npm run docs:cli` (plain `--help` leaves the expert options out); `test/cli-docs.test.ts` checks it is current.',
    '',
  ];
  const top = await captureStdout(['--help']);
  sections.push('## adapruner', '', '```', top.out.trimEnd(), '```', '');
  const names = commands.map((c) => String(c.command).split(' ')[0]!).sort();
  for (const name of names) {
    // Every option, the expert ones `--help` leaves out included.
    const help = await captureStdout([name, '--help', '--show-hidden']);
    sections.push(`## adapruner ${name}`, '', '```', help.out.trimEnd(), '```', '');
  }
  return sections.join('\n');
}
