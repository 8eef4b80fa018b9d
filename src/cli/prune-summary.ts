import path from 'node:path';
import { escapeControl } from '../escape.js';
import type { AdaPruneResult } from '../pipeline/adaprune.js';
import {
  budgetText,
  formatCount,
  formatPercent,
  renderKeyValues,
  renderTable,
  speedup,
} from '../report/table.js';
import { measureLabels, taskColumns } from '../report/measure.js';

/**
 * Progress of a prune run on stderr. By default it says little: warnings, fine-tuning progress, and on a
 * terminal one status line that each stage overwrites; the end summary carries the results and the warnings.
 * `--verbose` prints every stage, candidate and warning as it goes. Warnings raised while candidates are built
 * concern candidates that were not kept, so only `--verbose` prints them: the kept one's are in the notes.
 */
/** An indented progress line that counts the steps of a long stage: `  compensation pass 3/40: ...`. */
const STEP_LINE = /^\s+compensation (pass) (\d+)\/(\d+)/;

export class PruneLog {
  private stage = '';
  /** How far the current stage is, when it counts its steps (the half-minute notes show it with an ETA). */
  private step: { name: string; index: number; count: number } | undefined;
  private status = false;
  /** Warnings held for the summary (without --verbose). */
  readonly warnings: string[] = [];

  private readonly started = Date.now();
  private stageStarted = Date.now();
  private lastNote = Date.now();
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly verbose: boolean,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    noteEveryMs = 30_000,
  ) {
    // In a log (no terminal for the status line) a long run still shows it is alive, every half minute.
    if (!verbose && !stream.isTTY)
      this.timer = setInterval(() => this.note(noteEveryMs), Math.min(noteEveryMs, 5000)).unref();
  }

  /** Stops the half-minute notes (the run is over). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private note(every: number): void {
    const now = Date.now();
    // Every interval, whatever the stage: a run of many short stages (17 candidates) is as long as one long one.
    if (!this.stage || now - this.lastNote < every) return;
    this.lastNote = now;
    const seconds = Math.round((now - this.stageStarted) / 1000);
    const total = Math.round((now - this.started) / 1000);
    this.stream.write(
      `adapruner: ${escapeControl(this.stage)}... (${this.stepText(now)}${seconds} s into it, ${total} s in all)\n`,
    );
  }

  /** `pass 12/40, ETA 95 s; `: the steps done so far set the pace of the rest (empty before the second step). */
  private stepText(now: number): string {
    if (!this.step) return '';
    const { name, index, count } = this.step;
    const done = index - 1;
    if (done === 0) return `${name} ${index}/${count}; `;
    const eta = Math.round((((now - this.stageStarted) / done) * (count - done)) / 1000);
    return `${name} ${index}/${count}, ETA ${eta} s; `;
  }

  /** A progress line from the pipeline: `name...` starts a stage, an indented line reports on it. */
  readonly log = (line: string): void => {
    if (line.endsWith('...')) {
      this.stage = line.slice(0, -3);
      this.stageStarted = Date.now();
      this.step = undefined;
    }
    const step = STEP_LINE.exec(line);
    if (step) this.step = { name: step[1]!, index: Number(step[2]), count: Number(step[3]) };
    if (this.verbose) return this.line(line);
    if (this.stream.isTTY && line.endsWith('...')) {
      this.stream.write(`\r\x1b[K${escapeControl(line)}`);
      this.status = true;
    }
  };

  readonly warn = (message: string): void => {
    if (this.verbose) return this.line(`adapruner: warning: ${message}`);
    if (!/^(candidate|measure latency at|latency search)/.test(this.stage)) this.warnings.push(message);
  };

  /** A line that stays: it first clears the status line. */
  line(text: string): void {
    this.clear();
    this.stream.write(`${escapeControl(text, true)}\n`);
  }

  /** Before a progress bar or the summary takes the terminal. */
  clear(): void {
    if (this.status) this.stream.write('\r\x1b[K');
    this.status = false;
  }
}

/**
 * `fixtures/x.onnx` -> ok; the report files are named by their suffix after the model's own path, and the other
 * files beside the model (its preprocessing and layout) by their names.
 */
function fileList(files: readonly string[]): string {
  const model = files.find((f) => f.endsWith('.onnx'));
  const beside = (f: string): boolean => model !== undefined && path.dirname(f) === path.dirname(model);
  return files
    .map((f) =>
      model && f !== model && f.startsWith(model)
        ? f.slice(model.length)
        : f !== model && beside(f)
          ? path.basename(f)
          : f,
    )
    .join(', ');
}

/** Warnings for a budget the result does not meet (a latency target above all: it is measured, not planned). */
export function missedTargets(result: Omit<AdaPruneResult, 'model'>): string[] {
  const { budget } = result.report;
  if (budget.target === undefined || budget.plan !== undefined) return [];
  if (budget.achieved <= budget.target * 1.005) return [];
  const what = budget.kind === 'latency' ? 'latency' : budget.kind === 'params' ? 'parameters' : 'MACs';
  return [
    `${budget.kind} target ${formatPercent(budget.target)} missed: the result has ${formatPercent(budget.achieved)} of the original's ${what}`,
  ];
}

/**
 * The end of every prune run, short enough to read at once: before -> after for MACs, params and latency,
 * accuracy by stage with the one written marked, the chosen candidate, the files, and warnings.
 */
export function renderRunSummary(
  result: Omit<AdaPruneResult, 'model'>,
  files: readonly string[],
  warnings: readonly string[] = [],
): string {
  const r = result.report;
  const ratio = (a: number, b: number): string => formatPercent(a / b);
  const kv: [string, string][] = [
    [
      'MACs',
      `${formatCount(r.before.macs)} -> ${formatCount(r.after.macs)} (${ratio(r.after.macs, r.before.macs)})`,
    ],
    [
      'params',
      `${formatCount(r.before.params)} -> ${formatCount(r.after.params)} (${ratio(r.after.params, r.before.params)})`,
    ],
    [
      'latency',
      r.before.latencyMs !== undefined && r.after.latencyMs !== undefined
        ? `${r.before.latencyMs.toFixed(3)} ms -> ${r.after.latencyMs.toFixed(3)} ms (${speedup(r.before.latencyMs, r.after.latencyMs)})`
        : 'not measured',
    ],
    ['budget', budgetText(r.budget)],
  ];
  const chosen = r.criteria.find((c) => c.chosen);
  const { roundTo, wide, minChannels } = result.plan.budget ?? {};
  const multiples = roundTo
    ? `, multiples of ${roundTo}${wide ? ` (${wide.roundTo} in groups of ${wide.channels} or more)` : ''}${minChannels ? `, at least ${minChannels}` : ''}`
    : '';
  const widths = chosen?.widths?.replace(/, round \d+/, '') ?? '';
  kv.push([
    'channels',
    `${r.chosenCriterion}${widths ? `, ${widths} widths` : ''}${multiples}${r.criteria.length > 1 ? ` (best of ${r.criteria.length} candidates)` : ''}`,
  ]);
  const parts = [renderKeyValues(kv)];
  const task = taskColumns(r);
  if (r.accuracy.length)
    parts.push(
      renderTable(
        [
          'stage',
          { header: measureLabels(r).score, align: 'right' },
          { header: measureLabels(r).loss, align: 'right' },
          ...task.headers.map((header) => ({ header, align: 'right' as const })),
          'written',
        ],
        r.accuracy.map((a) => [
          a.stage,
          formatPercent(a.top1),
          a.loss?.toFixed(4) ?? '',
          ...task.cells(a),
          r.kept?.stage === a.stage ? 'yes' : '',
        ]),
      ),
    );
  const tail: [string, string][] = [];
  if (r.kept) tail.push(['written', `the ${r.kept.stage} model (${r.kept.reason})`]);
  if (r.task)
    tail.push([
      'task',
      `${r.task.name}: ${r.task.labels ? `labels ${r.task.labels}` : 'no labels'}, and against the original's outputs`,
    ]);
  // Without stages (data-free) the model written is the pruned one; with them, the kept stage says which.
  else if (!r.kept && files.some((f) => f.endsWith('.onnx'))) tail.push(['written', 'the pruned model']);
  if (files.length) tail.push(['files', fileList(files)]);
  const lines = [renderKeyValues(tail)];
  const hidden = (n: string): boolean => n.startsWith('skipped: ') || warnings.includes(n);
  for (const w of [...missedTargets(result), ...warnings]) lines.push(`warning: ${w}`);
  for (const n of r.notes.filter((n) => !hidden(n))) lines.push(`note: ${n}`);
  parts.push(lines.filter(Boolean).join('\n'));
  return parts.join('\n\n');
}

/** `--timings`: seconds per pipeline stage. */
export function renderTimings(result: Omit<AdaPruneResult, 'model'>): string {
  return renderTable(
    ['stage', { header: 'seconds', align: 'right' }],
    result.report.stages.map((s) => [s.name, s.seconds.toFixed(2)]),
  );
}
