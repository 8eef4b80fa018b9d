import { requireLabels, type AnyDataset } from '../data/dataset.js';
import type { AccuracyStage, StageTaskMetrics } from '../report/types.js';
import { evaluate } from '../runtime/evaluate.js';
import type { RunContext } from './context.js';
import type { FidelityScorer } from './label-free.js';
import type { DataOptions } from './options.js';
import { candidateFigure, labelledValue, type StageTaskScorer } from './stage-task.js';

/** Top-1 and mean cross-entropy on fixed samples: what the stages report and the candidates are ranked by. */
export interface ProxyScore {
  top1: number;
  loss: number;
  images: number;
  /** `--task` with labels on the training images: the labelled task figure (-Infinity where undefined). */
  task?: number;
}

/** The image sets and scorers of a run with data, as prepare-data.ts settles them. */
export interface ScoringSets {
  /** The calibration split: `holdout` ranks the candidates, `rest` calibrates and trains. */
  split: { holdout: Int32Array; rest: Int32Array };
  evalSet: AnyDataset;
  evalIndices: ArrayLike<number> | undefined;
  /** Without labels: scores stages by fidelity to the original instead of top-1. */
  fidelity?: FidelityScorer;
  /** `--task`: the task's metric of every stage. */
  taskScorer?: StageTaskScorer;
  /** `--task` with labels on the training images: the labelled figure of each candidate on the held-out ones. */
  candidateTask?: StageTaskScorer;
}

/**
 * How a run with data scores its models: candidates on the calibration split, stages on the evaluation set
 * (recorded in the context's accuracy rows), by top-1, or by fidelity without labels, and by the task's metric
 * under `--task`. A data-free run has none.
 */
export class Scoring implements ScoringSets {
  readonly split: ScoringSets['split'];
  readonly evalSet: AnyDataset;
  readonly evalIndices: ArrayLike<number> | undefined;
  readonly fidelity: FidelityScorer | undefined;
  readonly taskScorer: StageTaskScorer | undefined;
  readonly candidateTask: StageTaskScorer | undefined;

  constructor(
    private readonly ctx: RunContext,
    readonly data: DataOptions,
    sets: ScoringSets,
  ) {
    this.split = sets.split;
    this.evalSet = sets.evalSet;
    this.evalIndices = sets.evalIndices;
    this.fidelity = sets.fidelity;
    this.taskScorer = sets.taskScorer;
    this.candidateTask = sets.candidateTask;
  }

  /**
   * A candidate's proxy score on the held-out training images and, under `--task`, its task figure, read off
   * the same run of the model where the images have no labels (R² and mAP from one pass: a yolov8n candidate
   * at 640 took two runs of about 15 s each).
   */
  async candidateScore(bytes: Uint8Array): Promise<ProxyScore> {
    const train = this.data.train;
    const holdout = this.split.holdout;
    if (!this.candidateTask) return this.score(bytes, train, holdout);
    if (!this.fidelity)
      return {
        ...(await this.score(bytes, train, holdout)),
        task: candidateFigure(await this.candidateTask.measure(bytes)),
      };
    const { score, outputs } = await this.fidelity.scoreWithOutputs(bytes, train, holdout);
    return { ...score, task: candidateFigure(await this.candidateTask.measureOutputs(outputs)) };
  }

  async score(
    bytes: Uint8Array,
    dataset: AnyDataset,
    indices: ArrayLike<number> | undefined,
  ): Promise<ProxyScore> {
    if (this.fidelity) return this.fidelity.score(bytes, dataset, indices);
    const r = await evaluate(bytes, requireLabels(dataset), {
      batchSize: this.ctx.batchOf(256),
      spec: this.data.spec,
      runtime: this.ctx.runtime,
      ...(indices && { indices }),
    });
    return { top1: r.top1, loss: r.loss, images: r.n };
  }

  private record(stageName: AccuracyStage['stage'], s: ProxyScore, task?: StageTaskMetrics): void {
    this.ctx.accuracy.push({
      stage: stageName,
      top1: s.top1,
      loss: s.loss,
      images: s.images,
      ...(task && { task }),
    });
    const figures = [task?.labelled, task?.fidelity]
      .map(
        (f, i) =>
          f &&
          `, ${f.primary} ${f.value === null ? 'undefined' : f.value.toFixed(4)} ${i ? 'vs the original' : 'on labels'}`,
      )
      .join('');
    this.ctx.log(
      `  ${stageName}: ${this.fidelity ? 'fidelity R²' : 'top-1'} ${(100 * s.top1).toFixed(2)}% (${this.fidelity ? 'error' : 'loss'} ${s.loss.toFixed(4)}, ${s.images} images)${figures}`,
    );
  }

  /** A stage's model scored on the evaluation set (top-1 or R²), with its task metric under `--task`. */
  async evaluateStage(stage: AccuracyStage['stage'], label: string, bytes: Uint8Array): Promise<void> {
    const { ctx } = this;
    const scorer = this.taskScorer;
    if (scorer && this.fidelity) {
      // Without labels both figures come off one run of the model (the judge keeps its outputs anyway): a
      // 640x640 text detector's stages each took two runs of about 20 s over 100 images.
      const fidelity = this.fidelity;
      const { score, outputs } = await ctx.stage(`evaluate ${label}`, () =>
        fidelity.scoreWithOutputs(bytes, this.evalSet, this.evalIndices),
      );
      const task = await ctx.stage(`${scorer.options.layout.task} metric of the ${label} model`, () =>
        scorer.measureOutputs(outputs),
      );
      return this.record(stage, score, task);
    }
    const s = await ctx.stage(`evaluate ${label}`, () => this.score(bytes, this.evalSet, this.evalIndices));
    const task =
      scorer &&
      (await ctx.stage(`${scorer.options.layout.task} metric of the ${label} model`, () =>
        scorer.measure(bytes),
      ));
    this.record(stage, s, task);
  }

  /**
   * What the stages are ranked by (the model written): top-1 or R² as before; under `--task`, the task's figure:
   * against the labels where the evaluation images have them, else against the original's outputs (mAP of its
   * detections, mIoU of its masks), which follows what a user measures more closely than R² does (issue 29: on
   * the trained detector, stages of equal R² differed by 0.1 in mAP50-95). Undefined ranks lowest.
   */
  stageValue(stage: AccuracyStage['stage']): number {
    const a = this.ctx.accuracy.find((x) => x.stage === stage)!;
    if (!this.taskScorer) return a.top1;
    return this.taskScorer.labelled ? labelledValue(a.task) : (a.task?.fidelity?.value ?? -Infinity);
  }

  /** The ranked figure as the notes print it. */
  formatStageValue(v: number): string {
    if (!this.taskScorer) return `${(100 * v).toFixed(2)}%`;
    return Number.isFinite(v) ? v.toFixed(4) : 'undefined';
  }

  /** Why the best stage is the best, for the report. */
  rankedBy(): string {
    const scorer = this.taskScorer;
    if (scorer) {
      const figure = (a: AccuracyStage) => (scorer.labelled ? a.task?.labelled : a.task?.fidelity);
      const primary = this.ctx.accuracy.map(figure).find((f) => f)?.primary ?? scorer.options.layout.task;
      return scorer.labelled
        ? `the best ${primary} on labels of the stages`
        : `the best ${primary} against the original's outputs of the stages`;
    }
    return `the best ${this.fidelity ? 'fidelity to the original' : 'top-1'} of the stages`;
  }
}
