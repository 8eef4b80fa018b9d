import fs from 'node:fs';
import path from 'node:path';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { packageInfo } from '../package-root.js';
import { DETECT_EXAMPLE_OUTPUT, runDetectExample } from './example-detect.js';
import { main } from './main.js';

const EXAMPLE_TASKS = ['classify', 'detect'] as const;
const CLASSIFY_OUTPUT = 'example-output/fmnist-cnn-pruned.onnx';

interface ExampleArgs {
  task: (typeof EXAMPLE_TASKS)[number];
  output?: string;
  json: boolean;
  verbose: boolean;
  /** The global flag, passed on to prune. */
  timings: boolean;
}

/**
 * `npm start`: the main job on the bundled example (`--task detect`: the detector example, example-detect.ts). A Fashion-MNIST CNN that adapruner trained itself is
 * pruned to half its MACs with the adaptive criterion, recalibrated and briefly fine-tuned, on the small data
 * sample that ships with it.
 */
export const exampleCommand: CommandModule<object, ExampleArgs> = {
  command: 'example',
  describe: 'Run the whole pipeline on the bundled example (what `npm start` does)',
  builder: (y) =>
    y
      .option('task', {
        type: 'string',
        choices: EXAMPLE_TASKS,
        default: 'classify',
        describe: 'detect: the SynthDet detector, mAP before/after',
      })
      .option('output', {
        alias: 'o',
        type: 'string',
        requiresArg: true,
        describe: 'Where to write the pruned model (default in example-output/)',
      })
      .option('json', {
        type: 'boolean',
        default: false,
        describe: 'Print the summary as JSON',
      })
      .option('verbose', {
        type: 'boolean',
        default: false,
        describe: 'Print every stage and candidate, as prune --verbose',
      }) as unknown as Argv<ExampleArgs>,
  handler: async (argv: ArgumentsCamelCase<ExampleArgs>) => {
    const output = argv.output ?? (argv.task === 'detect' ? DETECT_EXAMPLE_OUTPUT : CLASSIFY_OUTPUT);
    fs.mkdirSync(path.dirname(path.resolve(output)), { recursive: true });
    if (argv.task === 'detect') {
      process.exitCode = await runDetectExample({ ...argv, output });
      return;
    }
    const EXAMPLE = path.join(packageInfo().root, 'fixtures', 'example');
    // Relative paths, so the report names the files as a user would type them.
    const data = path.relative(process.cwd(), path.join(EXAMPLE, 'fashion-mnist')) || '.';
    const model = path.relative(process.cwd(), path.join(EXAMPLE, 'fmnist-cnn.onnx'));
    const args = [
      'prune',
      model,
      '--flops',
      '0.5',
      '--criterion',
      'auto',
      '--data',
      data,
      '--val',
      data,
      '--calibration-images',
      '500',
      '--recal-batches',
      '10',
      '--recal-batch-size',
      '50',
      '--finetune-epochs',
      '2',
      '--finetune-lr',
      '0.01',
      '--finetune-batch',
      '50',
      '-o',
      output,
      ...(argv.json ? ['--json'] : []),
      ...(argv.verbose ? ['--verbose'] : []),
      ...(argv.timings ? ['--timings'] : []),
    ];
    if (!argv.json) process.stderr.write(`adapruner ${args.join(' ')}\n`);
    process.exitCode = await main(args);
  },
};
