import yargs, { type Argv } from 'yargs';
import { escapeControl } from '../escape.js';
import { isUserError } from '../errors.js';
import { resetRunFiles } from '../run-files.js';
import { commands } from './commands.js';
import { showHiddenOptions } from './option-groups.js';

/** Runs the CLI; resolves to the process exit code (0 ok, 2 user error, 1 bug). */
export async function main(argv: string[]): Promise<number> {
  let parser: Argv = yargs(argv)
    .scriptName('adapruner')
    .usage(
      '$0 <command> [options]\n\nPrune exported ONNX models (CNNs, detectors, segmenters, transformers) to a budget and recover them through onnxruntime.',
    )
    .strict()
    .middleware((parsed) => checkSingleValues(parsed, argv))
    .demandCommand(1, 'Name a command (see --help).')
    .option('timings', {
      type: 'boolean',
      default: false,
      describe: 'Print the time each compiler pass took',
    })
    .option('debug', { type: 'boolean', default: false, describe: 'Verify the IR after every pass' })
    .showHidden('show-hidden', 'With --help: the expert options too')
    .help()
    .alias('h', 'help')
    .version()
    .wrap(100)
    .exitProcess(false)
    .fail((msg, err) => {
      // yargs' own complaints (YError: a missing value, an unknown option) are usage errors like msg.
      throw err && err.name !== 'YError' ? err : new UsageError(msg ?? err?.message ?? 'invalid arguments');
    });
  showHiddenOptions(argv.includes('--show-hidden'));
  for (const command of commands) parser = parser.command(command);
  // Commands report failure through process.exitCode; isolate it so one call's code never leaks into the next.
  const outer = process.exitCode;
  process.exitCode = undefined;
  resetRunFiles();
  try {
    await parser.parseAsync();
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (isUserError(e) || e instanceof UsageError) {
      console.error(`adapruner: ${oneLine((e as Error).message)}`);
      return 2;
    }
    // A bug, not the user's doing: still one line (the stack with --debug), and exit code 1 to tell them apart.
    if (argv.includes('--debug')) throw e;
    console.error(
      `adapruner: internal error: ${oneLine(String((e as Error)?.message ?? e))} (rerun with --debug for the stack trace)`,
    );
    return 1;
  } finally {
    process.exitCode = outer;
  }
}

class UsageError extends Error {}

/** Options that take a list; every other option given twice (an array) is a mistake, not a choice. */
const LIST_OPTIONS = new Set(['_', '$0', 'input-shape', 'inputShape', 'output-kind', 'outputKind']);

/** A flag given twice, or a trailing flag with no value, is refused rather than read as an array or ''. */
function checkSingleValues(argv: Record<string, unknown>, raw: readonly string[]): void {
  // yargs reads a trailing `--batch` as its default (or undefined); only a boolean flag may come last bare.
  const last = raw.at(-1);
  if (last && /^--?[a-zA-Z]/.test(last) && !last.includes('=') && !last.startsWith('--no-')) {
    const key = last.replace(/^--?/, '');
    const value = argv[key];
    if (typeof value !== 'boolean' && key !== 'help' && key !== 'h' && key !== 'version')
      throw new UsageError(`${last} needs a value`);
  }
  for (const [key, value] of Object.entries(argv)) {
    if (LIST_OPTIONS.has(key) || key.length === 1 || key.includes('-')) continue;
    const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    if (Array.isArray(value)) throw new UsageError(`${flag} is given more than once`);
    if (value === '') throw new UsageError(`${flag} needs a value`);
  }
}

function oneLine(text: string): string {
  return escapeControl(text.replace(/\s*\n\s*/g, ' ').trim());
}
