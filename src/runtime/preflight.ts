import { UserError } from '../errors.js';
import { DataType, dataTypeName } from '../ir/data-type.js';
import type { Graph } from '../ir/graph.js';
import { loadModel } from '../ir/load.js';
import type { Model } from '../ir/model.js';
import { serializeModel } from '../ir/save.js';
import { verifyModel } from '../ir/verify.js';
import type * as ort from 'onnxruntime-node';
import { firstLine } from '../data/error-text.js';
import { probeInputDims, randomInputs } from '../shapes/probe.js';
import { createSession } from './session.js';

/**
 * What adapruner checks itself before a model reaches onnxruntime, so a broken file fails with one line naming
 * the file and the node instead of deep inside the runtime (or a pass): the IR's invariants (every value
 * defined once and before use, no cycles), at least one output, numeric weights without NaN, and no sparse
 * external data (onnxruntime would resolve it against the current folder, not the model's).
 */
export function checkModel(model: Model, file: string, options: { weights?: boolean } = {}): void {
  // Input and output names become keys of plain objects (onnxruntime's feeds and results): a name such as
  // '__proto__' or 'constructor' would read or replace the object's prototype instead.
  for (const v of [...model.graph.inputs, ...model.graph.outputs])
    if (v.name in Object.prototype)
      throw new UserError(
        `graph ${model.graph.inputs.includes(v) ? 'input' : 'output'} '${v.name}' has a name adapruner cannot use (it is a property of every JavaScript object); rename it`,
        file,
      );
  // onnxruntime takes names as C strings: one with a NUL byte would be cut short and name another value.
  for (const n of model.graph.allNodes())
    for (const v of [...n.inputs, ...n.outputs])
      if (v?.name.includes('\0'))
        throw new UserError(
          `value '${v.name}' has a NUL byte in its name, which onnxruntime cannot take`,
          file,
          n.name,
        );
  const problems = verifyModel(model);
  if (problems.length)
    throw new UserError(
      `is not a valid graph: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more problems)` : ''}`,
      file,
    );
  if (model.graph.outputs.length === 0) throw new UserError('the graph has no outputs', file);
  if (options.weights !== false) checkWeights(model.graph, file);
}

function checkWeights(g: Graph, file: string): void {
  for (const v of g.initializers) {
    const t = v.initializer!;
    if (t.dataType === DataType.STRING)
      throw new UserError(`initializer '${v.name}' holds strings; adapruner runs numeric models only`, file);
    if (t.dataType === DataType.FLOAT || t.dataType === DataType.DOUBLE) {
      const data = t.data as Float32Array | Float64Array;
      for (let i = 0; i < data.length; i++)
        if (Number.isNaN(data[i]!))
          throw new UserError(`initializer '${v.name}' holds NaN (element ${i})`, file);
    }
  }
  for (const v of g.sparseInitializers) {
    const sp = g.extra.sparse_initializer as { values?: { external_data?: unknown[] } }[] | undefined;
    if (sp?.some((s) => s.values?.external_data?.length))
      throw new UserError(
        `sparse initializer '${v.name}' stores its data externally, which is not supported`,
        file,
      );
  }
  for (const n of g.nodes) for (const sub of n.subgraphs()) checkWeights(sub, file);
}

/**
 * Loads a model file for onnxruntime: read and checked by adapruner (regular file, external data rules,
 * the checks above), then handed over as bytes, never as a path onnxruntime would open itself.
 */
export function modelBytesFromFile(file: string): Uint8Array {
  const model = loadModel(file);
  checkModel(model, file);
  return serializeModel(model);
}

/**
 * Opens `model` in onnxruntime (CPU) once and closes it: a model the runtime refuses is the user's file at
 * fault, named with onnxruntime's reason, before any work; a refusal after our own passes is then our bug.
 */
export async function checkRuntimeAccepts(model: Model, file: string): Promise<void> {
  // A session holds a second copy of the weights (and its bytes a third, briefly): past this size the check
  // would set the command's peak memory, so large models get the structural checks only.
  if (weightBytes(model) > RUNTIME_CHECK_MAX_BYTES) return;
  const session = await createSession(serializeModel(model), { device: 'cpu', source: file });
  try {
    // One run at batch 1 where the input shape is known: onnxruntime checks some shapes only when it runs.
    let feeds: Record<string, ort.Tensor> | undefined;
    try {
      feeds = randomInputs(model, probeInputDims(model));
    } catch {
      feeds = undefined; // shape left open, or not float: the command's own checks speak for it
    }
    if (feeds)
      await session.session.run(feeds).catch((e: unknown) => {
        throw new UserError(`onnxruntime cannot run the model (${firstLine(e)})`, file);
      });
  } finally {
    await session.release();
  }
}

const RUNTIME_CHECK_MAX_BYTES = 256 << 20;

function weightBytes(model: Model): number {
  let n = 0;
  for (const v of model.graph.initializers) n += v.initializer!.byteLength;
  return n;
}

export { dataTypeName };
