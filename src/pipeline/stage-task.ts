import type { AnyDataset, Dataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import type { StageTaskFigure, StageTaskMetrics } from '../report/types.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { collectReference, evaluateTask, measureOutputs, type TaskReference } from '../tasks/evaluate.js';
import type { RunOutputs } from '../runtime/fidelity.js';
import { UserError } from '../errors.js';
import type { OutputLayout } from '../tasks/layout.js';
import type { TaskLabels } from '../tasks/task-labels.js';
import type { TaskMetric } from '../tasks/types.js';

/**
 * The task metric of every prune stage (issue 29): `prune --task detect|segment|dense` measures each stage's
 * model with the task's own figure (COCO mAP, mIoU, thresholded-map IoU; src/tasks) beside the R² fidelity,
 * against the labels of the evaluation images when they have them, and always against the original model's
 * outputs (its detections above `referenceConf`, argmax masks, thresholded maps), which needs no labels.
 */
export interface StageTaskOptions {
  /** What the output is (resolveLayout): at least the task. */
  layout: OutputLayout;
  /** Labels of the evaluation images (`--val`, else `--data`), index for index; absent without labels. */
  labels?: TaskLabels;
}

/** Measures stages on fixed images; the original runs once, its predictions the fidelity reference. */
export class StageTaskScorer {
  private reference: Promise<TaskReference> | undefined;
  private readonly dataset: Dataset;

  constructor(
    private readonly original: Uint8Array,
    dataset: AnyDataset,
    private readonly indices: ArrayLike<number> | undefined,
    private readonly spec: PreprocessSpec,
    private readonly runtime: RuntimeOptions,
    private readonly batchSize: number,
    readonly options: StageTaskOptions,
  ) {
    this.dataset = asTaskDataset(dataset);
  }

  /** Whether the labelled figure exists, and so ranks the stages. */
  get labelled(): boolean {
    return this.options.labels !== undefined;
  }

  async measure(model: Uint8Array): Promise<StageTaskMetrics> {
    const r = await evaluateTask(model, this.dataset, await this.against());
    return metrics(r.task, r);
  }

  /** `measure` of a model whose outputs on these images were computed already (FidelityJudge's run). */
  async measureOutputs(run: RunOutputs): Promise<StageTaskMetrics> {
    const name = this.options.layout.output ?? run.names[0]!;
    const at = run.names.indexOf(name);
    if (at < 0)
      throw new UserError(`the model has no output '${name}' (its outputs: ${run.names.join(', ')})`);
    const batches = run.batches.map((batch, k) => ({ batch, output: run.outputs[k]![at]! }));
    const r = await measureOutputs(batches, this.dataset, 'the candidate', await this.against());
    return metrics(this.options.layout.task, r);
  }

  /** What a model is measured with: the images, the original's predictions (collected once), the labels. */
  private async against() {
    const common = {
      spec: this.spec,
      layout: this.options.layout,
      batchSize: this.batchSize,
      runtime: this.runtime,
      ...(this.indices && { indices: this.indices }),
    };
    this.reference ??= collectReference(this.original, this.dataset, common);
    return {
      ...common,
      reference: await this.reference,
      ...(this.options.labels && { labels: this.options.labels }),
    };
  }
}

function metrics(
  task: StageTaskMetrics['task'],
  r: { n: number; labelled?: TaskMetric; fidelity?: TaskMetric },
): StageTaskMetrics {
  return {
    task,
    images: r.n,
    ...(r.labelled && { labelled: figure(r.labelled) }),
    ...(r.fidelity && { fidelity: figure(r.fidelity) }),
  };
}

function figure(m: TaskMetric): StageTaskFigure {
  return {
    primary: m.primary,
    value: m.value,
    values: m.values,
    ...(m.notes.length > 0 && { notes: m.notes }),
  };
}

/**
 * The images as the task evaluator reads them: a task folder as it is, an unlabelled set (a list file, a .tar)
 * with placeholder class labels, which the task metrics never read (their labels are TaskLabels).
 */
function asTaskDataset(dataset: AnyDataset): Dataset {
  if (dataset.labelled !== false) return dataset;
  return {
    kind: 'image-folder',
    path: dataset.path,
    length: dataset.length,
    classNames: ['image'],
    labels: new Int32Array(dataset.length),
    describe: (i) => dataset.describe(i),
    load: (i, spec) => dataset.load(i, spec),
  };
}

/** A stage's figure that ranks stages when labels are given: the labelled primary value (null lowest). */
export function labelledValue(m: StageTaskMetrics | undefined): number {
  return m?.labelled?.value ?? -Infinity;
}

/**
 * What ranks a candidate under `--task`: its labelled figure where the training images have labels, else the
 * same figure against the original's outputs (null lowest).
 */
export function candidateFigure(m: StageTaskMetrics): number {
  return (m.labelled ?? m.fidelity)?.value ?? -Infinity;
}
