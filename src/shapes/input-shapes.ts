import { dataInputs } from '../analysis/cost.js';
import { UserError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { shapeToString } from '../ir/types.js';

/** Parses `--input-shape` values: `1x3x224x224` (the one data input) or `NAME=1x3x224x224`. */
export function parseInputShapes(
  option: string | string[] | undefined,
): number[] | Record<string, number[]> | undefined {
  if (option === undefined) return undefined;
  const values = Array.isArray(option) ? option : [option];
  const parsed = values.map((text) => {
    const m = /^(?:(.+)=)?(\d+(?:x\d+)*)$/.exec(text.trim());
    const dims = m?.[2]?.split('x').map(Number);
    if (!m || !dims || dims.some((d) => d <= 0 || !Number.isSafeInteger(d)))
      throw new UserError(`--input-shape '${text}' is not a shape like 1x3x224x224 (or NAME=1x3x224x224)`);
    return { name: m[1], dims };
  });
  if (parsed.length === 1 && parsed[0]!.name === undefined) return parsed[0]!.dims;
  const byName: Record<string, number[]> = {};
  for (const p of parsed) {
    if (p.name === undefined)
      throw new UserError('with several --input-shape values, name each input: NAME=1x3x224x224');
    byName[p.name] = p.dims;
  }
  return byName;
}

/**
 * The given `--input-shape` by input name, checked against the model: the rank must match, and a dim the
 * model fixes (other than the batch) must be the one given, since a shape the model cannot take would be
 * silently ignored. Symbolic dims may have any name (`height`, `p2o.DynamicDimension.1`) or none.
 */
export function inputShapesFor(
  model: Model,
  option: string | string[] | undefined,
  file: string,
): Record<string, number[]> | undefined {
  const given = parseInputShapes(option);
  if (given === undefined) return undefined;
  const inputs = dataInputs(model);
  if (Array.isArray(given) && inputs.length !== 1)
    throw new UserError(
      `the model has ${inputs.length} data inputs (${inputs.map((v) => v.name).join(', ')}); give each as --input-shape NAME=SHAPE`,
      file,
    );
  const byName = Array.isArray(given) ? { [inputs[0]!.name]: given } : given;
  for (const [name, dims] of Object.entries(byName)) {
    const input = inputs.find((v) => v.name === name);
    if (!input)
      throw new UserError(
        `--input-shape names '${name}', which is not an input of the model (inputs: ${inputs.map((v) => v.name).join(', ')})`,
        file,
      );
    const declared = input.shape;
    if (declared && declared.length !== dims.length)
      throw new UserError(
        `--input-shape ${dims.join('x')} has rank ${dims.length}; input '${name}' is ${shapeToString(declared)}`,
        file,
      );
    const clash = declared?.findIndex((d, i) => i > 0 && typeof d === 'number' && d !== dims[i]) ?? -1;
    if (clash >= 0)
      throw new UserError(
        `--input-shape ${dims.join('x')} contradicts input '${name}', which is fixed at ${shapeToString(declared)} (dim ${clash})`,
        file,
      );
  }
  return byName;
}
