import { UserError } from '../errors.js';
import { AttributeType } from '../ir/attribute.js';
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
import { ValidationError, validateModel } from './validate.js';

/**
 * What adapruner checks itself before a model reaches onnxruntime, so a broken file fails with one line naming
 * the file and the node instead of deep inside the runtime (or a pass): the IR's invariants (every value
 * defined once and before use, no cycles), at least one output, the types of the standard attributes, finite
 * numeric weights, BatchNormalization variances that are not negative, and no sparse external data
 * (onnxruntime would resolve it against the current folder, not the model's).
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
  checkAttributeTypes(model.graph, file);
  if (options.weights !== false) {
    checkWeights(model.graph, file);
    checkBatchNormVariances(model.graph, file);
  }
}

/**
 * The types of the standard attributes every command reads (kernel geometry, groups, axes, epsilon), so a file
 * with `group` as a string or `strides` as a float fails here with one line naming the node, before a pass or
 * onnxruntime (which adapruner skips for models past RUNTIME_CHECK_MAX_BYTES) reads it.
 */
const ATTRIBUTE_TYPES: Record<string, AttributeType> = {
  group: AttributeType.INT,
  axis: AttributeType.INT,
  keepdims: AttributeType.INT,
  transA: AttributeType.INT,
  transB: AttributeType.INT,
  ceil_mode: AttributeType.INT,
  count_include_pad: AttributeType.INT,
  blocksize: AttributeType.INT,
  kernel_shape: AttributeType.INTS,
  strides: AttributeType.INTS,
  pads: AttributeType.INTS,
  dilations: AttributeType.INTS,
  output_padding: AttributeType.INTS,
  output_shape: AttributeType.INTS,
  perm: AttributeType.INTS,
  epsilon: AttributeType.FLOAT,
  momentum: AttributeType.FLOAT,
  auto_pad: AttributeType.STRING,
};

function checkAttributeTypes(g: Graph, file: string): void {
  for (const n of g.nodes) {
    if (n.domain === '' || n.domain === 'ai.onnx')
      for (const [name, a] of n.attributes) {
        const want = Object.hasOwn(ATTRIBUTE_TYPES, name) ? ATTRIBUTE_TYPES[name] : undefined;
        if (want !== undefined && a.type !== want)
          throw new UserError(
            `attribute '${name}' is ${attributeTypeName(a.type)}, not ${attributeTypeName(want)} as ONNX defines it`,
            file,
            n.name,
          );
      }
    for (const sub of n.subgraphs()) checkAttributeTypes(sub, file);
  }
}

function attributeTypeName(t: AttributeType): string {
  const names: Partial<Record<AttributeType, string>> = {
    [AttributeType.INT]: 'an int',
    [AttributeType.INTS]: 'a list of ints',
    [AttributeType.FLOAT]: 'a float',
    [AttributeType.FLOATS]: 'a list of floats',
    [AttributeType.STRING]: 'a string',
    [AttributeType.STRINGS]: 'a list of strings',
    [AttributeType.TENSOR]: 'a tensor',
    [AttributeType.GRAPH]: 'a graph',
  };
  return names[t] ?? `of type ${t}`;
}

/**
 * BatchNormalization divides by sqrt(var + epsilon): a negative running variance (var + epsilon <= 0) gives NaN
 * outputs, and fine-tuning such a model writes NaN weights. A variance of exactly 0 is kept: PyTorch's running
 * variance of a dead channel decays to 0 in float32, and epsilon covers it.
 */
export function checkBatchNormVariances(
  g: Graph,
  file: string,
  values?: (name: string) => ArrayLike<number> | undefined,
): void {
  for (const n of g.nodes) {
    if (n.opType === 'BatchNormalization' && (n.domain === '' || n.domain === 'ai.onnx')) {
      const v = n.inputs[4];
      const data = v && (values?.(v.name) ?? (v.initializer?.data as ArrayLike<number> | undefined));
      const eps = n.attributes.get('epsilon');
      const epsilon = eps?.type === AttributeType.FLOAT ? eps.value : 1e-5;
      if (data)
        for (let i = 0; i < data.length; i++)
          if (!(data[i]! + epsilon > 0) || data[i]! < 0)
            throw new UserError(
              `BatchNormalization running variance '${v!.name}' is ${data[i]} at channel ${i}; a variance must not be negative`,
              file,
              n.name,
            );
    }
    for (const sub of n.subgraphs()) checkBatchNormVariances(sub, file, values);
  }
}

function checkWeights(g: Graph, file: string): void {
  for (const v of g.initializers) {
    const t = v.initializer!;
    if (t.dataType === DataType.STRING)
      throw new UserError(`initializer '${v.name}' holds strings; adapruner runs numeric models only`, file);
    if (t.dataType === DataType.FLOAT || t.dataType === DataType.DOUBLE) {
      // In pieces: `t.data` would cache a decoded copy of every unaligned weight, a second copy of the file.
      let start = 0;
      // A scalar -Infinity is the fill of an attention mask (torch's masked_fill(-inf), an initializer once
      // constants are folded, so every pruned text model with a padding mask has one): not a broken weight.
      const fill = t.size <= 1;
      for (const data of t.chunks() as Generator<Float32Array | Float64Array>) {
        for (let i = 0; i < data.length; i++)
          if (!Number.isFinite(data[i]!) && !(fill && Math.abs(data[i]!) === Infinity))
            throw new UserError(`initializer '${v.name}' holds ${data[i]} (element ${start + i})`, file);
        start += data.length;
      }
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
 * `original` is fed the very batches `model` is (a teacher, or the reference of a comparison): it must take the
 * same inputs, in the same order and rank, with no fixed size the model's lack, and have as many outputs to
 * compare. `fed` ends the message: what is fed to both.
 */
export function sameFeeds(model: Model, original: Model, file: string, fed: string): void {
  const inputs = (m: Model) => m.graph.inputs.filter((v) => !v.isInitializer);
  const names = (m: Model) =>
    inputs(m)
      .map((v) => v.name)
      .join(', ');
  if (names(model) !== names(original))
    throw new UserError(
      `takes the inputs ${names(original)}, where the model takes ${names(model)}: ${fed}`,
      file,
    );
  const ours = inputs(model);
  const show = (dims: readonly unknown[] | undefined) => `[${(dims ?? []).join(', ')}]`;
  inputs(original).forEach((theirs, i) => {
    const mine = ours[i]!;
    const fits =
      mine.shape?.length === theirs.shape?.length &&
      (theirs.shape ?? []).every((d, k) => typeof d !== 'number' || d === mine.shape?.[k]);
    if (!fits)
      throw new UserError(
        `takes the input ${theirs.name} ${show(theirs.shape)}, where the model takes ${mine.name} ${show(mine.shape)}: ${fed}`,
        file,
      );
  });
  const [mine, its] = [model.graph.outputs.length, original.graph.outputs.length];
  if (mine !== its)
    throw new UserError(
      `has ${its} outputs where the model has ${mine}: each output is compared with its own`,
      file,
    );
}

/**
 * Opens `model` in onnxruntime (CPU) once and closes it: a model the runtime refuses is the user's file at
 * fault, named with onnxruntime's reason, before any work; a refusal after our own passes is then our bug.
 */
export async function checkRuntimeAccepts(
  model: Model,
  file: string,
  inputShapes?: Record<string, number[]>,
): Promise<void> {
  // A session holds a second copy of the weights (and its bytes a third, briefly): past this size the check
  // would set the command's peak memory, so large models get the structural checks only.
  if (weightBytes(model) > RUNTIME_CHECK_MAX_BYTES) return;
  const session = await createSession(serializeModel(model), { device: 'cpu', source: file });
  try {
    // One run at batch 1 where the input shape is known: onnxruntime checks some shapes only when it runs.
    let feeds: Record<string, ort.Tensor> | undefined;
    try {
      feeds = randomInputs(model, probeInputDims(model, inputShapes));
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

/**
 * Validates a model a command is about to write (IR, structure, one onnxruntime run whose outputs must be
 * finite: src/runtime/validate.ts); the failure names what was made (`fine-tuned`, `recalibrated`).
 */
export async function validateWritten(
  model: Model,
  what: string,
  inputShapes?: Record<string, number[]>,
): Promise<void> {
  // Past the runtime check's size, onnxruntime would hold a second copy of the weights: structure only.
  if (weightBytes(model) > RUNTIME_CHECK_MAX_BYTES) return;
  let dims: Map<string, number[]>;
  try {
    dims = probeInputDims(model, inputShapes);
  } catch {
    return; // input dimensions left open: the command's own run on real data is the check
  }
  try {
    await validateModel(model, dims);
  } catch (e) {
    if (e instanceof ValidationError)
      throw new UserError(e.message.replace(/^the pruned model/, `the ${what} model`));
    throw e;
  }
}

/**
 * `inspect`'s preflight: the same as every command's (checkModel, then one onnxruntime run), except that a
 * structure-only export whose external weights are absent is still counted, from its structure, with the
 * structural checks alone and a note saying so. Returns whether the weights were checked.
 */
export async function checkModelForInspect(
  model: Model,
  file: string,
  note: (line: string) => void,
): Promise<boolean> {
  try {
    checkModel(model, file);
    await checkRuntimeAccepts(model, file);
    return true;
  } catch (e) {
    if (!(e instanceof UserError && /cannot read external data .*: ENOENT$/.test(e.message))) throw e;
    checkModel(model, file, { weights: false });
    note(
      `the external weights are absent (${e.message.replace(/^.*?cannot read/, 'cannot read')}): counted from the structure; the weights are not checked`,
    );
    return false;
  }
}
