import * as ort from 'onnxruntime-node';
import { batches } from '../data/batches.js';
import type { Dataset } from '../data/dataset.js';
import { firstLine } from '../data/error-text.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { UserError } from '../errors.js';
import {
  checkInputShape,
  createSession,
  type ModelSession,
  type RuntimeOptions,
} from '../runtime/session.js';
import type { OutputLayout } from './layout.js';
import { taskFor } from './registry.js';
import type { TaskLabels } from './task-labels.js';
import type { MetricAccumulator, OutputTensor, Task, TaskMetric, TaskName } from './types.js';

/** The original model's predictions made targets, collected once (collectReference) and reused per candidate. */
export interface TaskReference {
  readonly task: TaskName;
  /** The layout completed from the original's output (class count, box axis). */
  readonly layout: OutputLayout;
  readonly source: string;
  /** Output dims of the original's first batch: a candidate's must equal them. */
  readonly dims: readonly number[];
  /** Target of each dataset index measured. */
  readonly targets: ReadonlyMap<number, unknown>;
}

export interface TaskEvalOptions {
  spec: PreprocessSpec;
  /** What the output is (resolveLayout); at least the task. */
  layout: OutputLayout;
  /** Default 64; a model whose batch dimension is fixed gets batches of that size. */
  batchSize?: number;
  indices?: ArrayLike<number>;
  runtime?: RuntimeOptions;
  /** The input shape the caller expects (`--input-shape`): the data must give it, past the batch. */
  inputShape?: readonly number[];
  /** Labels: the labelled figure is measured when given. */
  labels?: TaskLabels;
  /**
   * The original model: the fidelity figure (the same metric with the original's predictions as targets) is
   * measured when given, as a session or file run beside the model, or as targets collected before.
   */
  reference?: ModelSession | string | Uint8Array | TaskReference;
  onProgress?: (done: number, total: number) => void;
}

export interface TaskEvalResult {
  task: TaskName;
  layout: OutputLayout;
  /** Against the labels. */
  labelled?: TaskMetric;
  /** Against the original model's predictions. */
  fidelity?: TaskMetric;
  n: number;
  seconds: number;
  imagesPerSecond: number;
  model: string;
  reference?: string;
  device: 'cpu' | 'cuda';
  batchSize: number;
}

/**
 * Measures a model on a task: against labels, against the original model (fidelity), or both. The figure is
 * the task's own (top-1, COCO mAP, mIoU, thresholded-map IoU), so a pruned candidate can be ranked by it.
 */
export async function evaluateTask(
  model: ModelSession | string | Uint8Array,
  dataset: Dataset,
  options: TaskEvalOptions,
): Promise<TaskEvalResult> {
  if (!options.labels && !options.reference)
    throw new UserError('nothing to measure against: give labels, or the original model (--against)');
  const owned: ModelSession[] = [];
  const open = async (m: ModelSession | string | Uint8Array) => {
    if (typeof m !== 'string' && !(m instanceof Uint8Array)) return m;
    const s = await createSession(m, options.runtime);
    owned.push(s);
    return s;
  };
  try {
    const session = await open(model);
    const ref = options.reference;
    const reference = ref === undefined || isCollected(ref) ? ref : await open(ref);
    return await run(session, reference, dataset, options);
  } finally {
    for (const s of owned) await s.release();
  }
}

/**
 * Runs the original model once over the data and keeps its predictions as targets, so that many candidates
 * are measured against it without running it again (`evaluateTask(candidate, data, { reference })`).
 */
export async function collectReference(
  original: ModelSession | string | Uint8Array,
  dataset: Dataset,
  options: Omit<TaskEvalOptions, 'labels' | 'reference'>,
): Promise<TaskReference> {
  const session =
    typeof original === 'string' || original instanceof Uint8Array
      ? await createSession(original, options.runtime)
      : original;
  try {
    const task = taskFor(options.layout.task);
    const targets = new Map<number, unknown>();
    let layout = options.layout;
    let dims: readonly number[] = [];
    await forEachBatch(session, dataset, options, async (batch, output) => {
      if (targets.size === 0) {
        task.check(output, layout, session.source);
        layout = task.complete(output, layout);
        dims = output.dims;
      }
      task.decode(output, layout).forEach((p, s) => targets.set(batch.indices[s]!, task.asTarget(p, layout)));
    });
    return { task: task.name, layout, source: session.source, dims, targets };
  } finally {
    if (session !== original) await session.release();
  }
}

function isCollected(r: unknown): r is TaskReference {
  return typeof r === 'object' && r !== null && 'targets' in r && r.targets instanceof Map;
}

interface Measured {
  task: Task;
  layout: OutputLayout;
  labelled?: MetricAccumulator<unknown, unknown>;
  fidelity?: MetricAccumulator<unknown, unknown>;
}

async function run(
  session: ModelSession,
  reference: ModelSession | TaskReference | undefined,
  dataset: Dataset,
  options: TaskEvalOptions,
): Promise<TaskEvalResult> {
  const task = taskFor(options.layout.task);
  let m: Measured | undefined;
  let done = 0;
  const started = performance.now();
  const batchSize = await forEachBatch(session, dataset, options, async (batch, output) => {
    let refOutput: OutputTensor | undefined;
    if (reference && !isCollected(reference)) refOutput = await runOutput(reference, batch, options.layout);
    m ??= start(task, session.source, reference, output, refOutput, options);
    checkSameDims(
      output,
      refOutput ?? (isCollected(reference) ? reference.dims : undefined),
      session.source,
      m.layout,
    );
    await addBatch(m, dataset, options, batch, output, refOutput, reference);
    done += batch.n;
    options.onProgress?.(done, options.indices?.length ?? dataset.length);
  });
  const seconds = (performance.now() - started) / 1000;
  return {
    task: task.name,
    layout: m?.layout ?? options.layout,
    ...(m?.labelled && { labelled: m.labelled.summary() }),
    ...(m?.fidelity && { fidelity: m.fidelity.summary() }),
    n: done,
    seconds,
    imagesPerSecond: done / seconds,
    model: session.source,
    ...(reference && { reference: reference.source }),
    device: session.device,
    batchSize,
  };
}

/** One batch's predictions into the metrics: against the labels, and against the original's predictions. */
async function addBatch(
  m: Measured,
  dataset: Dataset,
  options: TaskEvalOptions,
  batch: Pick<RunBatch, 'shape' | 'n' | 'indices'>,
  output: OutputTensor,
  refOutput: OutputTensor | undefined,
  reference: ModelSession | TaskReference | undefined,
): Promise<void> {
  const { task } = m;
  const predictions = task.decode(output, m.layout);
  const refPredictions = refOutput && task.decode(refOutput, m.layout);
  const [, , h, w] = batch.shape;
  for (let s = 0; s < batch.n; s++) {
    const index = batch.indices[s]!;
    if (m.labelled) {
      const context = {
        layout: m.layout,
        spec: options.spec,
        inputWidth: w,
        inputHeight: h,
        outputDims: output.dims,
      };
      m.labelled.add(predictions[s], await options.labels!.load(index, context));
    }
    if (m.fidelity) {
      const target = refPredictions
        ? task.asTarget(refPredictions[s], m.layout)
        : (reference as TaskReference).targets.get(index);
      if (target === undefined)
        throw new UserError(`the collected reference has no prediction for ${dataset.describe(index)}`);
      m.fidelity.add(predictions[s], target);
    }
  }
}

/**
 * The task figures of outputs computed elsewhere, batch by batch (a candidate the pipeline runs once for its R²
 * and its task figure alike), against the labels and the collected reference.
 */
export async function measureOutputs(
  outputs: Iterable<{ batch: Pick<RunBatch, 'shape' | 'n' | 'indices'>; output: OutputTensor }>,
  dataset: Dataset,
  source: string,
  options: TaskEvalOptions & { reference?: TaskReference },
): Promise<Pick<TaskEvalResult, 'labelled' | 'fidelity' | 'n'>> {
  const task = taskFor(options.layout.task);
  let m: Measured | undefined;
  let n = 0;
  for (const { batch, output } of outputs) {
    m ??= start(task, source, options.reference, output, undefined, options);
    checkSameDims(output, options.reference?.dims, source, m.layout);
    await addBatch(m, dataset, options, batch, output, undefined, options.reference);
    n += batch.n;
  }
  return {
    ...(m?.labelled && { labelled: m.labelled.summary() }),
    ...(m?.fidelity && { fidelity: m.fidelity.summary() }),
    n,
  };
}

/** On the first batch: the output checked, the layout completed from the original's output, the metrics made. */
function start(
  task: Task,
  source: string,
  reference: ModelSession | TaskReference | undefined,
  output: OutputTensor,
  refOutput: OutputTensor | undefined,
  options: TaskEvalOptions,
): Measured {
  task.check(output, options.layout, source);
  const layout = isCollected(reference)
    ? reference.layout
    : task.complete(refOutput ?? output, options.layout);
  if (isCollected(reference) && reference.task !== task.name)
    throw new UserError(`the collected reference is for task ${reference.task}, not ${task.name}`);
  return {
    task,
    layout,
    ...(options.labels && { labelled: task.metric(layout, false) }),
    ...(reference && { fidelity: task.metric(layout, true) }),
  };
}

function checkSameDims(
  output: OutputTensor,
  refDims: readonly number[] | OutputTensor | undefined,
  source: string,
  layout: OutputLayout,
): void {
  const dims = refDims && ('dims' in refDims ? refDims.dims : refDims);
  if (!dims || dims.length === 0) return;
  const same = dims.length === output.dims.length && dims.every((d, i) => i === 0 || d === output.dims[i]);
  if (!same)
    throw new UserError(
      `output '${layout.output}' is [${output.dims.join(',')}] but the original's is [${dims.join(',')}]; ` +
        'fidelity compares outputs of one layout',
      source,
    );
}

interface RunBatch {
  images: Float32Array;
  shape: [number, number, number, number];
  n: number;
  indices: Int32Array;
}

/** Streams the data through one model; returns the batch size used. */
async function forEachBatch(
  session: ModelSession,
  dataset: Dataset,
  options: Pick<TaskEvalOptions, 'spec' | 'batchSize' | 'indices' | 'layout' | 'inputShape'>,
  each: (batch: RunBatch, output: OutputTensor) => Promise<void>,
): Promise<number> {
  const fixed = session.inputShape[0];
  const batchSize = typeof fixed === 'number' && fixed > 0 ? fixed : (options.batchSize ?? 64);
  let first = true;
  for await (const batch of batches(dataset, {
    spec: options.spec,
    batchSize,
    ...(options.indices && { indices: options.indices }),
  })) {
    if (first) {
      checkInputShape(session, batch.shape, `the data (${dataset.describe(batch.indices[0]!)})`);
      const want = options.inputShape;
      if (want && (want.length !== 4 || want.some((d, i) => i > 0 && d !== batch.shape[i])))
        throw new UserError(
          `--input-shape is ${want.join('x')} but the data gives ${batch.shape.slice(1).join('x')} after the batch`,
          dataset.describe(batch.indices[0]!),
        );
    }
    first = false;
    await each(batch, await runOutput(session, batch, options.layout));
  }
  return batchSize;
}

/** One batch through a model, returning the layout's output (default: the first) with its dims. */
export async function runOutput(
  model: ModelSession,
  batch: Pick<RunBatch, 'images' | 'shape'>,
  layout: OutputLayout,
): Promise<OutputTensor> {
  const name = layout.output ?? model.outputName;
  if (!model.session.outputNames.includes(name))
    throw new UserError(
      `has no output '${name}' (its outputs: ${model.session.outputNames.join(', ')})`,
      model.source,
    );
  const feeds = { [model.inputName]: new ort.Tensor('float32', batch.images, batch.shape) };
  try {
    const result = await model.session.run(feeds, [name]);
    const tensor = result[name]!;
    if (tensor.type !== 'float32')
      throw new UserError(`output '${name}' is ${tensor.type}; a task reads float32 outputs`, model.source);
    return { data: tensor.data as Float32Array, dims: tensor.dims };
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(
      `onnxruntime failed on an input of shape [${batch.shape.join(',')}] (${firstLine(e)})`,
      model.source,
    );
  }
}
