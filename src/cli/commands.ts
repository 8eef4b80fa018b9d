import type { CommandModule } from 'yargs';

// Each command lives in its own file; add it here to expose it.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [];
