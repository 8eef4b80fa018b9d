import type { Options } from 'yargs';
import { dataInputs } from '../analysis/cost.js';
import type { Model } from '../ir/model.js';
import type { Dim } from '../ir/types.js';

export { inputShapesFor, parseInputShapes } from '../shapes/input-shapes.js';

/** `--input-shape`, the same on every command that loads a model (one line of help; docs/cli.md). */
export const INPUT_SHAPE_OPTION: Options = {
  type: 'string',
  requiresArg: true,
  describe: 'Input shape where the model leaves dims open, e.g. 1x3x640x640 (NAME=SHAPE per input)',
};

/**
 * The dims of the model's first data input, `--input-shape` applied: what a spec's `letterbox`/`stretch` fit
 * images to (specForInput).
 */
export function imageInputDims(
  model: Model,
  inputShapes: Record<string, number[]> | undefined,
): readonly Dim[] | undefined {
  const input = dataInputs(model)[0];
  return input && (inputShapes?.[input.name] ?? input.shape);
}
