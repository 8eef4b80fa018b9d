import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Dataset } from '../data/dataset.js';
import type { ResolvedSpec } from '../data/preprocess.js';
import { balancedSubset } from '../data/subset.js';
import { UserError } from '../errors.js';
import { renderKeyValues } from '../report/table.js';
import { createSession, type RuntimeOptions } from '../runtime/session.js';
import { evaluateTask, type TaskEvalResult } from './evaluate.js';
import { TaskImageFolder } from './folder.js';
import { layoutPathFor, resolveLayout, type ResolvedLayout } from './layout.js';
import { classLabels, folderLabels, type TaskLabels } from './task-labels.js';
import type { TaskMetric, TaskName } from './types.js';

/** What eval's flags say about the task path. */
export interface TaskFlags {
  model: string;
  task?: string;
  layout?: string;
  against?: string;
}

/**
 * Whether eval measures a task rather than a classifier's top-1 as before: `--task` other than classify alone,
 * `--layout`, `--against`, or a `MODEL.layout.json` beside the model.
 */
export function wantsTaskEval(flags: TaskFlags): boolean {
  if (flags.layout !== undefined || flags.against !== undefined) return true;
  if (flags.task !== undefined) return flags.task !== 'classify';
  return existsSync(layoutPathFor(flags.model));
}

export interface TaskEvalRequest extends TaskFlags {
  data: string;
  split: 'train' | 'test';
  limit?: number;
  seed: number;
  batch?: number;
  json: boolean;
  inputShape?: number[];
  preprocessing: ResolvedSpec;
  runtime: RuntimeOptions;
  /** Opens `--data` as a labelled classification set (eval's own reader), for classify. */
  openClassData: () => Promise<{ dataset: Dataset; indices?: Int32Array }>;
  onProgress?: (done: number, total: number) => void;
}

/** eval's task path: resolves the layout, opens the data and its labels, measures, and renders the result. */
export async function runTaskEval(request: TaskEvalRequest): Promise<string> {
  const session = await createSession(request.model, request.runtime);
  try {
    const layout = resolveLayout({
      ...(request.task !== undefined && { task: request.task }),
      ...(request.layout !== undefined && { layoutFile: request.layout }),
      modelPath: request.model,
      outputs: session.session.outputMetadata.map((m) => ({
        name: m.name,
        shape: m.isTensor ? m.shape : [],
      })),
    });
    const { dataset, indices, labels } = await openData(request, layout.layout.task);
    if (!labels && request.against === undefined)
      throw new UserError(
        `has no labels for ${layout.layout.task} (${labelHint(layout.layout.task)}); give --against ORIGINAL.onnx ` +
          "to measure fidelity to the original model's outputs",
        request.data,
      );
    const result = await evaluateTask(session, dataset, {
      spec: request.preprocessing.spec,
      layout: layout.layout,
      batchSize: request.batch ?? (layout.layout.task === 'classify' ? 256 : 16),
      runtime: request.runtime,
      ...(indices && { indices }),
      ...(labels && { labels }),
      ...(request.against !== undefined && { reference: request.against }),
      ...(request.inputShape && { inputShape: request.inputShape }),
      ...(request.onProgress && { onProgress: request.onProgress }),
    });
    return request.json
      ? `${JSON.stringify(taskReport(request, dataset, labels, layout, result), null, 2)}\n`
      : `${renderTaskResult(request, dataset, labels, layout, result)}\n`;
  } finally {
    await session.release();
  }
}

function labelHint(task: TaskName): string {
  if (task === 'detect') return 'expected labels/STEM.txt beside images/';
  if (task === 'classify') return 'expected one subfolder of images per class';
  return 'expected masks/STEM.png beside images/';
}

/** A folder holding images/ or images directly is a task folder; otherwise (classify) eval's own reader. */
async function openData(
  request: TaskEvalRequest,
  task: TaskName,
): Promise<{ dataset: Dataset; indices?: Int32Array; labels?: TaskLabels }> {
  if (task === 'classify' && !looksLikeImageFolder(request.data)) {
    const { dataset, indices } = await request.openClassData();
    return { dataset, ...(indices && { indices }), labels: classLabels(dataset) };
  }
  const folder = await TaskImageFolder.open(request.data, task, request.split);
  const labels = task === 'classify' ? undefined : folderLabels(folder, task);
  if (request.limit === undefined) return { dataset: folder, ...(labels && { labels }) };
  if (!(Number.isInteger(request.limit) && request.limit > 0))
    throw new UserError(`--limit must be a positive integer, not ${request.limit}`);
  const indices = balancedSubset(folder.labels, request.limit, request.seed);
  return { dataset: folder, indices, ...(labels && { labels }) };
}

function looksLikeImageFolder(path: string): boolean {
  try {
    if (!statSync(path).isDirectory()) return false;
    if (existsSync(join(path, 'images'))) return true;
    return TaskImageFolder.holdsImages(path);
  } catch {
    return false;
  }
}

function taskReport(
  request: TaskEvalRequest,
  dataset: Dataset,
  labels: TaskLabels | undefined,
  layout: ResolvedLayout,
  result: TaskEvalResult,
): object {
  const { layout: completed, ...figures } = result;
  return {
    ...figures,
    data: {
      path: dataset.path,
      images: result.n,
      split: request.split,
      limit: request.limit ?? null,
      seed: request.seed,
      labels: labels?.describe ?? null,
      withoutLabelFile: labels?.missing ?? null,
    },
    preprocessing: request.preprocessing,
    layout: { source: layout.source, ...completed },
  };
}

function renderTaskResult(
  request: TaskEvalRequest,
  dataset: Dataset,
  labels: TaskLabels | undefined,
  layout: ResolvedLayout,
  result: TaskEvalResult,
): string {
  const rows: [string, string][] = [
    ['model', request.model],
    ...(request.against !== undefined ? ([['against', request.against]] as [string, string][]) : []),
    ['task', `${result.task} (layout: ${layout.source})`],
    [
      'data',
      `${dataset.path} (${result.n} images${labels ? `; labels: ${labels.describe}` : ', no labels'})`,
    ],
    ['preprocessing', request.preprocessing.source],
  ];
  if (result.labelled) rows.push(...metricRows('labels', result.labelled));
  if (result.fidelity) rows.push(...metricRows('fidelity', result.fidelity));
  rows.push([
    'speed',
    `${result.imagesPerSecond.toFixed(0)} images/s (${result.seconds.toFixed(1)} s, ${result.device}, batch ${result.batchSize})`,
  ]);
  return renderKeyValues(rows);
}

/** One row per figure: `labels mAP50-95: 0.4123`; counts as integers; undefined figures say so. */
function metricRows(what: string, m: TaskMetric): [string, string][] {
  const rows = Object.entries(m.values).map(([name, v]): [string, string] => [
    `${what} ${name}`,
    v === null ? 'undefined' : v.toFixed(4),
  ]);
  if (m.counts)
    rows.push([
      `${what} counts`,
      Object.entries(m.counts)
        .map(([name, n]) => `${n} ${name}`)
        .join(', '),
    ]);
  for (const note of m.notes) rows.push([`${what} note`, note]);
  return rows;
}
