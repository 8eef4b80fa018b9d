import fs from 'node:fs';
import { specPathFor } from '../data/preprocess.js';
import { checkOutput, type RunOutputs } from '../run-files.js';
import { layoutPathFor } from '../tasks/layout.js';

/**
 * The files beside an input model that say how to feed it and read its outputs (MODEL.preprocess.json,
 * MODEL.layout.json), as [from, to] pairs beside the output. A pruned, fine-tuned or recalibrated model takes
 * the same images and its outputs mean the same, so `eval OUT` and a later prune find them as they found the
 * original's.
 */
export function sidecarsFor(model: string, output: string): [string, string][] {
  return [specPathFor, layoutPathFor]
    .map((pathFor): [string, string] => [pathFor(model), pathFor(output)])
    .filter(([from]) => fs.existsSync(from));
}

/** Checks each sidecar's destination before the work, as every output is (never an input, its folder exists). */
export function checkSidecarOutputs(model: string, output: string): void {
  for (const [, to] of sidecarsFor(model, output)) checkOutput(to, 'model description');
}

/** Stages the sidecars with the run's other outputs (written whole, or not at all); returns their paths. */
export function stageSidecars(outputs: RunOutputs, model: string, output: string): string[] {
  return sidecarsFor(model, output).map(([from, to]) => {
    outputs.write(to, fs.readFileSync(from), 'model description');
    return to;
  });
}
