import path from 'node:path';
import { writeFileAtomically } from '../atomic-write.js';
import { renderReportMarkdown } from './markdown.js';
import { renderReportSvg } from './svg.js';
import type { PruneReport } from './types.js';

export type { PruneReport, AccuracyStage, CriterionRow, GroupRow, ModelFigures } from './types.js';
export { renderReportSvg, renderReportMarkdown };

/** Writes OUT.report.json, OUT.report.md and OUT.report.svg next to the model, each atomically. */
export function writeReports(report: PruneReport, modelPath: string): string[] {
  const base = `${modelPath}.report`;
  const files: [string, string][] = [
    [`${base}.json`, `${JSON.stringify(report, null, 2)}\n`],
    [`${base}.svg`, renderReportSvg(report)],
    [`${base}.md`, renderReportMarkdown(report, path.basename(`${base}.svg`))],
  ];
  for (const [file, text] of files) writeFileAtomically(file, text);
  return files.map(([f]) => f);
}
