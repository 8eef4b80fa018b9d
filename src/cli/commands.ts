import type { CommandModule } from 'yargs';
import { finetuneCommand } from './finetune.js';
import { inspectCommand } from './inspect.js';
import { pruneCommand } from './prune.js';
import { exampleCommand } from './example.js';
import { evalCommand, recalibrateCommand } from './eval.js';
import { benchCommand } from './bench.js';
import { exportTorchCommand } from './export-torch.js';

// Each command lives in its own file; add it here to expose it.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [
  inspectCommand,
  finetuneCommand,
  pruneCommand,
  exampleCommand,
  evalCommand,
  recalibrateCommand,
  benchCommand,
  exportTorchCommand,
];
