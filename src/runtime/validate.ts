import fs from 'node:fs';
import * as ort from 'onnxruntime-node';
import { firstLine } from '../data/error-text.js';
import { UserError } from '../errors.js';
import { collectGarbage, verifyModel, type Model, type Value } from '../ir/index.js';
import { serializeModelCompact } from '../ir/save.js';
import { constantOf } from '../ir/constant.js';
import { probeInputDims, randomInputs } from '../shapes/probe.js';

export interface ValidationResult {
  verifyMs: number;
  sessionMs: number;
  runMs: number;
}

/**
 * A pruned model that must not be written. A UserError so that the CLI prints it on one line with exit code 2
 * (the issue is a model the pruner cannot handle correctly, reported before anything lands on disk).
 */
export class ValidationError extends UserError {
  constructor(reason: string) {
    super(`the pruned model fails validation and was not written: ${reason}`);
    this.name = 'ValidationError';
  }
}

/** Ops whose weight (input 1) carries channels: a 0 in its dims is a layer pruned away entirely. */
const WEIGHTED = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);

/**
 * Structural problems onnxruntime may let through (with optimisations off it happily creates a Conv with 0
 * output channels, and a Concat of it) or report only as a raw log: a declared activation shape with a zero
 * dimension, a Conv/Gemm/MatMul weight with a zero dimension, a Conv whose `group` does not divide its
 * channels. Returns the first problem, naming its node, or undefined.
 */
export function structuralProblem(model: Model): string | undefined {
  const zeroDims = (v: Value | undefined): boolean => {
    const shape = v?.type?.kind === 'tensor' ? v.type.shape : undefined;
    return !!shape && shape.some((d) => d === 0);
  };
  for (const v of model.graph.inputs)
    if (!v.isInitializer && zeroDims(v)) return `graph input '${v.name}' has a zero-sized dimension`;
  for (const node of model.graph.allNodes()) {
    if (WEIGHTED.has(node.opType)) {
      const w = constantOf(node.inputs[1]);
      if (w && w.dims.some((d) => d === 0)) {
        const what =
          node.opType === 'Conv' && w.dims[0] === 0
            ? '0 output channels'
            : `a weight with a zero-sized dimension [${w.dims.join(', ')}]`;
        return `${node} has ${what}`;
      }
      if (node.opType === 'Conv' && w) {
        const group = node.attrInt('group', 1);
        const cin = node.inputs[0]?.shape?.[1];
        if (group < 1 || w.dims[0]! % group !== 0)
          return `${node} has group ${group} for ${w.dims[0]} output channels`;
        if (typeof cin === 'number' && cin !== w.dims[1]! * group)
          return `${node} reads ${cin} channels but its weight expects ${w.dims[1]! * group} (group ${group})`;
      }
    }
    // Empty constants are legitimate (Resize's unused roi); empty activations are not.
    for (const o of node.outputs)
      if (node.opType !== 'Constant' && zeroDims(o) && !constantOf(o))
        return `${node}: output '${o.name}' has a zero-sized dimension`;
  }
  return undefined;
}

/**
 * Checks a rewritten model before anything is written: the IR verifier, the structural check above, then an
 * onnxruntime session at the optimisation level users run with and one run on random input whose outputs must
 * have the expected shapes and be finite. Any failure is a ValidationError naming the node, on one line.
 */
export async function validateModel(
  model: Model,
  inputDims?: Map<string, number[]>,
): Promise<ValidationResult> {
  const check = prepareValidation(model, inputDims);
  // From bytes the model itself is then rebased onto: one copy of the weights, not the model's and the bytes'.
  // What it held before (sliced arrays) is freed before onnxruntime's own copies are made.
  const bytes = serializeModelCompact(model, { rebase: true });
  if (bytes.length >= 16 << 20) collectGarbage();
  return check.run(bytes);
}

/** A validation whose structural part is done: `run` makes the onnxruntime session and the run. */
export interface PreparedValidation {
  /** The model as bytes, or the file it was written to (its weights then need not be in memory). */
  run(model: Uint8Array | string): Promise<ValidationResult>;
}

/**
 * The structural checks, and what the onnxruntime run needs (random inputs, the declared outputs), taken from
 * `model` now: the run itself holds no reference to it, so a caller that wrote the model can let its weights go
 * and validate the written file, with one copy of the weights in memory (onnxruntime's) instead of two.
 */
export function prepareValidation(model: Model, inputDims?: Map<string, number[]>): PreparedValidation {
  const started = performance.now();
  const problems = verifyModel(model);
  if (problems.length) throw new ValidationError(`IR verification: ${problems.slice(0, 3).join('; ')}`);
  const structural = structuralProblem(model);
  if (structural) throw new ValidationError(structural);
  const feeds = randomInputs(model, inputDims ?? probeInputDims(model));
  const outputs = model.graph.outputs.map((v) => ({ name: v.name, shape: v.shape }));
  const verifyMs = performance.now() - started;
  return {
    async run(source) {
      let t = performance.now();
      let session: ort.InferenceSession;
      try {
        // The default optimisation level (`all`), as every deployment and every other session here uses: with
        // optimisations off onnxruntime accepted graphs (0-channel convs) that it rejects, or crashes on, with
        // them on. Its own log is silenced: the reason comes back in the error, and is reported on one line.
        // Past LARGE_MODEL_BYTES the check runs at `extended`, everything but the blocked (NCHWc) layout
        // transform, whose copy of every conv weight set the peak of a prune (WRN-50-2: 675 MiB at `all`, 624
        // MiB at `extended`, a 263 MiB file); the structural check above refuses the 0-channel layers.
        const options: ort.InferenceSession.SessionOptions = {
          graphOptimizationLevel: byteSize(source) >= LARGE_MODEL_BYTES ? 'extended' : 'all',
          logSeverityLevel: 4,
          // Prepacked weight copies (MLAS's GEMM layouts) would add a copy of the weights for one run.
          extra: { session: { disable_prepacking: '1' } },
        };
        session = await (typeof source === 'string'
          ? ort.InferenceSession.create(source, options)
          : ort.InferenceSession.create(source, options));
      } catch (e) {
        throw ortFailure('onnxruntime rejects it', e);
      }
      const sessionMs = performance.now() - t;
      t = performance.now();
      try {
        checkOutputs(await runOnce(session, feeds), outputs);
      } finally {
        await session.release();
      }
      return { verifyMs, sessionMs, runMs: performance.now() - t };
    },
  };
}

/** Models at least this large are validated without the NCHWc layout transform (see prepareValidation). */
export const LARGE_MODEL_BYTES = 64 << 20;

function byteSize(source: Uint8Array | string): number {
  return typeof source === 'string' ? fs.statSync(source).size : source.byteLength;
}

async function runOnce(
  session: ort.InferenceSession,
  feeds: Record<string, ort.Tensor>,
): Promise<ort.InferenceSession.ReturnType> {
  try {
    return await session.run(feeds, { logSeverityLevel: 4 });
  } catch (e) {
    throw ortFailure('onnxruntime fails to run it', e);
  }
}

function checkOutputs(
  out: ort.InferenceSession.ReturnType,
  outputs: { name: string; shape: readonly (number | string | null)[] | undefined }[],
): void {
  for (const v of outputs) {
    const r = out[v.name];
    if (!r) throw new ValidationError(`it did not produce output '${v.name}'`);
    const want = v.shape;
    if (want && want.some((d, i) => typeof d === 'number' && d !== Number(r.dims[i])))
      throw new ValidationError(`output '${v.name}' has dims [${r.dims}], declared [${want}]`);
    if (r.type === 'float32' && !(r.data as Float32Array).every(Number.isFinite))
      throw new ValidationError(`output '${v.name}' is not finite on random input`);
  }
}

/** onnxruntime's message, reduced to one line, with the node it names (`Name:'...'`) pulled out. */
function ortFailure(what: string, e: unknown): ValidationError {
  const text = String((e as Error)?.message ?? e);
  const node = /Name:\s*'([^']*)'/.exec(text)?.[1] ?? /node (?:name )?'?([^\s',]+)'?/i.exec(text)?.[1];
  const reason = /Status Message:\s*(.*)/.exec(text)?.[1] ?? firstLine(e);
  const at = node ? ` at node '${node}'` : '';
  return new ValidationError(`${what}${at}: ${reason.replace(/\s+/g, ' ').trim().slice(0, 300)}`);
}
