import { existsSync, statSync } from 'node:fs';
import type { Options } from 'yargs';
import type { AnyDataset, UnlabelledDataset } from '../data/dataset.js';
import { openDataset } from '../data/open.js';
import { UserError } from '../errors.js';
import type { Model } from '../ir/index.js';
import type { DataOptions } from '../pipeline/adaprune.js';
import { TaskImageFolder } from '../tasks/folder.js';
import { layoutPathFor, readLayoutFile, resolveLayout } from '../tasks/layout.js';
import { folderLabels } from '../tasks/task-labels.js';
import { TASK_NAMES, type TaskName } from '../tasks/types.js';

/**
 * `prune --task detect|segment|dense` (docs/tasks.md, "In prune"): every stage is measured by the task's metric
 * beside the R² fidelity. `--data` and `--val` are task folders (DIR/images/ with labels/ or masks/ beside,
 * ultralytics' split folders included) or plain images; the pipeline reads only their images (recovery is
 * distillation from the original), and the labels of the evaluation images, where there are any, give the
 * labelled figure, which then ranks the stages; those of the training images rank the candidates.
 */
export const PRUNE_TASK_OPTIONS: Record<'task' | 'layout', Options> = {
  task: {
    type: 'string',
    choices: TASK_NAMES,
    describe: 'Also score every stage by this task: mAP, mIoU or map IoU',
  },
  layout: {
    type: 'string',
    requiresArg: true,
    describe: 'With --task: output-layout JSON (default: MODEL.layout.json if present)',
  },
};

export interface TaskDataRequest {
  model: string;
  task?: string;
  layout?: string;
  data: string;
  val?: string;
}

/** Whether prune takes the task path: `--task` other than classify, or `--layout`. */
export function wantsPruneTask(argv: { task?: string; layout?: string }): boolean {
  return argv.layout !== undefined || (argv.task !== undefined && argv.task !== 'classify');
}

/**
 * Whether prune with `--data` takes the task path on its own: no `--task`, and a `MODEL.layout.json` beside the
 * model that names a task other than classify (as eval reads it), so that a detector's candidates and stages
 * are ranked by its mAP against the original without the user asking.
 */
export function layoutBesideModel(argv: { task?: string; layout?: string; model: string }): boolean {
  if (argv.task !== undefined || argv.layout !== undefined) return false;
  const file = layoutPathFor(argv.model);
  const task = existsSync(file) ? readLayoutFile(file).task : undefined;
  return task !== undefined && task !== 'classify';
}

/** The layout, the images (as unlabelled sets for the pipeline) and the labels of the evaluation images. */
export async function openTaskData(
  model: Model,
  request: TaskDataRequest,
): Promise<{ train: AnyDataset; val?: AnyDataset; task: NonNullable<DataOptions['task']> }> {
  const resolved = resolveLayout({
    ...(request.task !== undefined && { task: request.task }),
    ...(request.layout !== undefined && { layoutFile: request.layout }),
    modelPath: request.model,
    outputs: model.graph.outputs.map((o) => ({
      name: o.name,
      shape: (o.shape ?? []).map((d) => (typeof d === 'number' ? d : String(d))),
    })),
  });
  const task = resolved.layout.task;
  if (task === 'classify')
    throw new UserError(
      '--layout says classify: prune measures a classifier by top-1 on class folders already; drop --layout',
    );
  const train = await openImages(request.data, task, 'train');
  const val = request.val !== undefined ? await openImages(request.val, task, 'test') : undefined;
  const evaluated = val ?? train;
  const labels = evaluated instanceof TaskImageFolder ? folderLabels(evaluated, task) : undefined;
  const trainLabels = train instanceof TaskImageFolder ? folderLabels(train, task) : undefined;
  return {
    train: imagesOnly(train),
    ...(val && { val: imagesOnly(val) }),
    task: {
      layout: resolved.layout,
      source: resolved.source,
      ...(labels && { labels }),
      ...(trainLabels && { trainLabels }),
    },
  };
}

/**
 * A folder as a task folder (its `train` split for --data, its `val` split for --val; a folder holding one
 * split only serves it to both); a list file or archive as plain images.
 */
async function openImages(
  path: string,
  task: TaskName,
  split: 'train' | 'test',
): Promise<TaskImageFolder | AnyDataset> {
  if (!isFolder(path)) {
    const dataset = await openDataset(path, { split, labels: 'optional' });
    if (dataset.labelled !== false)
      throw new UserError(
        `--task ${task} reads a folder of images (with ${task === 'detect' ? 'labels/' : 'masks/'} beside for labels) or plain images, not class labels`,
        path,
      );
    return dataset;
  }
  try {
    return await TaskImageFolder.open(path, task, split);
  } catch (e) {
    if (!(e instanceof UserError && /has no images/.test(e.message))) throw e;
    return TaskImageFolder.open(path, task, split === 'train' ? 'test' : 'train').catch(() => {
      throw e;
    });
  }
}

function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The images alone: the pipeline scores by fidelity and distils, and reads the task labels apart. */
function imagesOnly(dataset: TaskImageFolder | AnyDataset): AnyDataset {
  if (!(dataset instanceof TaskImageFolder)) return dataset;
  const images: UnlabelledDataset = {
    kind: 'unlabelled',
    labelled: false,
    labels: undefined,
    classNames: undefined,
    path: dataset.path,
    length: dataset.length,
    describe: (i) => dataset.describe(i),
    load: (i, spec) => dataset.load(i, spec),
  };
  return images;
}
