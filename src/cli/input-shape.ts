import type { Options } from 'yargs';

export { inputShapesFor, parseInputShapes } from '../shapes/input-shapes.js';

/** `--input-shape`, the same on every command that loads a model (one line of help; docs/cli.md). */
export const INPUT_SHAPE_OPTION: Options = {
  type: 'string',
  requiresArg: true,
  describe: 'Input shape where the model leaves dims open, e.g. 1x3x640x640 (NAME=SHAPE per input)',
};
