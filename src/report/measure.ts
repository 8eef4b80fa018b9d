import type { AccuracyStage, CriterionRow, PruneReport } from './types.js';

/** Column names for the stage scores: top-1 and loss on labels, or fidelity R² and error without them. */
export function measureLabels(r: Pick<PruneReport, 'measure'>): { score: string; loss: string } {
  return r.measure === 'fidelity'
    ? { score: 'fidelity R²', loss: 'error' }
    : { score: 'top-1', loss: 'loss' };
}

/**
 * `prune --task`: the task's columns of the stage tables, every labelled figure (`mAP50`, `mAP50-95`) then the
 * primary figure against the original's outputs (`mAP50-95 vs original`); none without --task.
 */
export function taskColumns(r: Pick<PruneReport, 'accuracy' | 'task'>): {
  headers: string[];
  cells: (a: AccuracyStage) => string[];
} {
  if (!r.task) return { headers: [], cells: () => [] };
  const first = r.accuracy.find((a) => a.task)?.task;
  const labelled = Object.keys(first?.labelled?.values ?? {});
  const primary = first?.fidelity?.primary;
  const fmt = (v: number | null | undefined): string =>
    v === undefined ? '' : v === null ? 'undefined' : v.toFixed(4);
  return {
    headers: [...labelled, ...(primary ? [`${primary} vs original`] : [])],
    cells: (a) => [
      ...labelled.map((k) => fmt(a.task?.labelled?.values[k])),
      ...(primary ? [fmt(a.task?.fidelity?.value)] : []),
    ],
  };
}

/** The candidates' task figure as a column (`prune --task`): against labels, or against the original's outputs. */
export function candidateTaskColumn(r: Pick<PruneReport, 'accuracy' | 'task'>): {
  headers: string[];
  cells: (c: CriterionRow) => string[];
} {
  if (!r.task) return { headers: [], cells: () => [] };
  const labels = r.task.ranksCandidates === 'labels';
  const figure = (a: (typeof r.accuracy)[number]) => (labels ? a.task?.labelled : a.task?.fidelity);
  const primary = r.accuracy.map(figure).find((f) => f)?.primary ?? r.task.name;
  return {
    headers: [`proxy ${primary}${labels ? '' : ' vs original'}`],
    cells: (c) => [c.task === undefined ? '' : c.task === null ? 'undefined' : c.task.toFixed(4)],
  };
}
