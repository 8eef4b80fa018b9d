import yargs, { type Argv } from 'yargs';
import { isUserError } from '../errors.js';
import { commands } from './commands.js';

/** Runs the CLI; resolves to the process exit code (0 ok, 2 user error, 1 bug). */
export async function main(argv: string[]): Promise<number> {
  let parser: Argv = yargs(argv)
    .scriptName('adapruner')
    .usage(
      '$0 <command> [options]\n\nPrune exported ONNX CNNs to a budget and fine-tune them through onnxruntime.',
    )
    .strict()
    .demandCommand(1, 'Name a command (see --help).')
    .option('timings', {
      type: 'boolean',
      default: false,
      describe: 'Print the time each compiler pass took',
    })
    .option('debug', { type: 'boolean', default: false, describe: 'Verify the IR after every pass' })
    .help()
    .alias('h', 'help')
    .version()
    .wrap(100)
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new UsageError(msg);
    });
  for (const command of commands) parser = parser.command(command);
  // Commands report failure through process.exitCode; isolate it so one call's code never leaks into the next.
  const outer = process.exitCode;
  process.exitCode = undefined;
  try {
    await parser.parseAsync();
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (isUserError(e) || e instanceof UsageError) {
      console.error(`adapruner: ${(e as Error).message}`);
      return 2;
    }
    throw e;
  } finally {
    process.exitCode = outer;
  }
}

class UsageError extends Error {}
