import path from 'node:path';
import { writeFileAtomically } from '../atomic-write.js';
import { renderReportMarkdown } from './markdown.js';
import { renderReportSvg } from './svg.js';
import type { PruneReport } from './types.js';

export type { PruneReport, AccuracyStage, CriterionRow, GroupRow, ModelFigures } from './types.js';
export { renderReportSvg, renderReportMarkdown };

/** The files writeReports writes for a model at `modelPath`. */
export function reportPaths(modelPath: string): string[] {
  return ['json', 'svg', 'md'].map((ext) => `${modelPath}.report.${ext}`);
}

/**
 * Writes OUT.report.json, OUT.report.md and OUT.report.svg next to the model, each atomically (or through
 * `write`, which the CLI uses to stage them with the model and rename all together).
 */
export function writeReports(
  report: PruneReport,
  modelPath: string,
  write: (file: string, text: string) => void = writeFileAtomically,
): string[] {
  const base = `${modelPath}.report`;
  const files: [string, string][] = [
    [`${base}.json`, `${JSON.stringify(report, null, 2)}\n`],
    [`${base}.svg`, renderReportSvg(report)],
    [`${base}.md`, renderReportMarkdown(report, path.basename(`${base}.svg`))],
  ];
  for (const [file, text] of files) write(file, text);
  return files.map(([f]) => f);
}
