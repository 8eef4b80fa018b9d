/** Everything a pruning run reports; written as OUT.report.json and drawn into the .md and .svg files. */
/** A task figure measured against labels, or against the original model's outputs (no labels needed). */
export type TaskReference = 'labels' | 'original';

export interface PruneReport {
  tool: { name: string; version: string };
  input: string;
  output: string;
  /**
   * `target` is the requested fraction; with `--plan-in` it is the budget the plan was made for (absent when the
   * plan names none) and `plan` is the file.
   */
  budget: { kind: 'flops' | 'params' | 'latency'; target?: number; achieved: number; plan?: string };
  /** Totals before and after pruning. MACs per image at the input size used. */
  before: ModelFigures;
  after: ModelFigures;
  /** Top-1 (and loss) at each stage, on the validation data when given, else the calibration split. */
  accuracy: AccuracyStage[];
  /**
   * What `accuracy[].top1` and `criteria[].top1` hold: top-1 (labelled data), or, on images without labels,
   * fidelity to the original (R² of the outputs; `loss` is then the normalised error). Absent: top-1.
   */
  measure?: 'top-1' | 'fidelity';
  /** One row per inheritance criterion tried, with its proxy score; `chosen` marks the one kept. */
  criteria: CriterionRow[];
  chosenCriterion: string;
  groups: GroupRow[];
  stages: { name: string; seconds: number }[];
  /** Least-squares compensation of the chosen candidate, when it ran. */
  compensation?: CompensationSummary;
  /**
   * How BN statistics were re-estimated for every candidate: batches of `batchSize` images (fewer above
   * 224x224 unless --recal-batch-size is given), the variance pooled over images when the batches are small.
   */
  recalibration?: { batches: number; batchSize: number; pooledVariance: boolean };
  /** With data: the stage whose model was written (`--keep-stage`, default the best top-1), and why. */
  kept?: { stage: AccuracyStage['stage']; reason: string };
  /**
   * `prune --task`: the task measured at every stage (`accuracy[].task`), where its labels are (absent: none,
   * so only the figure against the original's outputs), and whether the labelled figure ranked the stages (labels
   * on the evaluation images) and the candidates (labels on the training images; `criteria[].task`).
   */
  task?: {
    name: string;
    layout: string;
    labels?: string;
    /** What the task figure that ranks the stages and the candidates is measured against. */
    ranksStages: TaskReference;
    ranksCandidates: TaskReference;
  };
  notes: string[];
}

export interface ModelFigures {
  macs: number;
  params: number;
  /** Median onnxruntime latency in milliseconds for one batch, when measured. */
  latencyMs?: number;
}

export interface AccuracyStage {
  /** `compensated`: least-squares compensation, then BN recalibration. */
  stage: 'original' | 'pruned' | 'recalibrated' | 'compensated' | 'finetuned';
  top1: number;
  loss?: number;
  images: number;
  /** `prune --task`: the task's figures for this stage's model. */
  task?: StageTaskMetrics;
}

/** A task's figures for one stage (src/tasks): against labels, and against the original's outputs. */
export interface StageTaskMetrics {
  task: string;
  images: number;
  /** Against the label files of the evaluation images, when they have them. */
  labelled?: StageTaskFigure;
  /** The same metric with the original model's predictions as the reference (docs/tasks.md, fidelity). */
  fidelity?: StageTaskFigure;
}

export interface StageTaskFigure {
  /** The primary figure's name (`mAP50-95`, `mIoU`, `IoU`) and value; null where undefined. */
  primary: string;
  value: number | null;
  /** Every figure (`mAP50`, `mAP50-95`; `mIoU`, `pixelAccuracy`; ...). */
  values: Record<string, number | null>;
  notes?: string[];
}

export interface CriterionRow {
  criterion: string;
  /** The width source the candidate was pruned with. */
  widths?: string;
  /** The channel-count rounding it was pruned with (the label names it only when it is not the default). */
  roundTo?: number;
  top1: number;
  loss: number;
  /** `prune --task` with labels on the training images: the labelled figure that ranked it (null: undefined). */
  task?: number | null;
  chosen: boolean;
}

export interface GroupRow {
  id: string;
  /** A readable name: the PyTorch module path of the group's first member (`layer1.0.conv1`). */
  label: string;
  /** The first member's value name in the graph (the plan's anchor), as the exporter wrote it. */
  anchor?: string;
  before: number;
  after: number;
  score?: number;
  frozen?: string;
}

export interface CompensationSummary {
  /** The compensated model replaced the plain one (its proxy loss was lower). */
  used: boolean;
  seconds: number;
  /**
   * Training images the fits read (outside the calibration split), in batches of up to 100; the last fifth of the
   * batches (at least one, so 12 of 512 images) checks each fit.
   */
  images?: number;
  /** Proxy loss on the calibration split, after recalibration, without and with compensation. */
  proxyLossBefore: number;
  proxyLossAfter: number;
  layers: {
    node: string;
    op: string;
    inputs: number;
    outputs: number;
    errorBefore: number;
    errorAfter: number;
    kept: boolean;
  }[];
  skipped: { node: string; reason: string }[];
}
