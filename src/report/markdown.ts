import { escapeControl, escapeMarkdown } from '../escape.js';
import { summarizeReasons } from './module-names.js';
import { budgetText, formatApprox, formatPercent, speedup } from './table.js';
import type { PruneReport } from './types.js';
import { candidateTaskColumn, measureLabels, taskColumns } from './measure.js';

function table(header: string[], rows: (string | number)[][]): string {
  // A '|' ends a cell even inside a code span (GFM), so every cell escapes it.
  const cell = (c: string | number): string => escapeControl(String(c)).replace(/\|/g, '\\|');
  const line = (cells: (string | number)[]): string => `| ${cells.map(cell).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function renderReportMarkdown(r: PruneReport, svgFile?: string): string {
  const out: string[] = [];
  out.push(`# Pruning report: ${escapeMarkdown(r.input)}`, '');
  out.push(
    `Output ${codeSpan(r.output ?? '').replace(/\|/g, '\\|')}, made by ${r.tool.name} ${r.tool.version}. Budget: ${escapeMarkdown(budgetText(r.budget))}. Criterion: **${r.chosenCriterion}**.`,
    '',
  );
  if (svgFile) out.push(`![widths and accuracy](${svgFile})`, '');
  const latency = (f: { latencyMs?: number }): string =>
    f.latencyMs === undefined ? '—' : `${f.latencyMs.toFixed(2)} ms`;
  out.push('## Totals', '');
  out.push(
    table(
      ['', 'before', 'after', 'ratio'],
      [
        [
          'MACs',
          formatApprox(r.before.macs),
          formatApprox(r.after.macs),
          formatPercent(r.after.macs / r.before.macs),
        ],
        [
          'params',
          formatApprox(r.before.params),
          formatApprox(r.after.params),
          formatPercent(r.after.params / r.before.params),
        ],
        [
          'latency',
          latency(r.before),
          latency(r.after),
          r.before.latencyMs && r.after.latencyMs ? speedup(r.before.latencyMs, r.after.latencyMs) : '—',
        ],
      ],
    ),
    '',
  );
  if (r.accuracy.length) {
    out.push('## Accuracy', '');
    out.push(
      table(
        ['stage', measureLabels(r).score, measureLabels(r).loss, ...taskColumns(r).headers, 'images'],
        r.accuracy.map((a) => [
          a.stage,
          formatPercent(a.top1),
          a.loss?.toFixed(4) ?? '—',
          ...taskColumns(r).cells(a),
          a.images,
        ]),
      ),
      '',
    );
    if (r.kept) out.push(`Written: the **${r.kept.stage}** model (${escapeMarkdown(r.kept.reason)}).`, '');
    if (r.task)
      out.push(
        `Task: ${r.task.name} (${escapeMarkdown(r.task.labels ? `labels ${r.task.labels}` : 'no labels')}; the "vs original" column takes the original's outputs as the reference).`,
        '',
      );
  }
  if (r.criteria.length) {
    out.push('## Inheritance criteria', '');
    out.push(
      table(
        [
          'criterion',
          'widths',
          `proxy ${measureLabels(r).score}`,
          'proxy loss',
          ...candidateTaskColumn(r).headers,
          'chosen',
        ],
        r.criteria.map((c) => [
          c.criterion,
          c.widths ?? '—',
          formatPercent(c.top1),
          c.loss.toFixed(4),
          ...candidateTaskColumn(r).cells(c),
          c.chosen ? 'yes' : '',
        ]),
      ),
      '',
    );
  }
  if (r.compensation) {
    const c = r.compensation;
    const kept = c.layers.filter((l) => l.kept).length;
    out.push('## Compensation', '');
    out.push(
      `Least-squares re-fit of ${c.layers.length} layers (${kept} fits kept, ${c.skipped.length} skipped)` +
        `${c.images !== undefined ? ` on ${c.images} images` : ''} in ` +
        `${c.seconds.toFixed(1)} s; proxy loss ${c.proxyLossBefore.toFixed(4)} → ${c.proxyLossAfter.toFixed(4)}` +
        ` (${c.used ? 'used' : 'not used: no better'}).`,
      '',
    );
    out.push(
      table(
        ['layer', 'inputs', 'outputs', 'held-out error before', 'after', 'kept'],
        c.layers.map((l) => [
          `\`${l.node}\``,
          l.inputs,
          l.outputs,
          l.errorBefore.toFixed(4),
          l.errorAfter.toFixed(4),
          l.kept ? 'yes' : '',
        ]),
      ),
      '',
    );
    for (const s of c.skipped) out.push(`- skipped \`${s.node}\`: ${s.reason}`);
    if (c.skipped.length) out.push('');
  }
  out.push('## Groups', '');
  out.push(
    table(
      ['group', 'module', 'before', 'after', 'score', 'frozen'],
      r.groups.map((g) => [
        g.id,
        codeSpan(g.label),
        g.before,
        g.after,
        g.score?.toFixed(4) ?? '—',
        summarizeReasons(g.frozen),
      ]),
    ),
    '',
  );
  if (r.stages.length) {
    out.push('## Time per stage', '');
    out.push(
      table(
        ['stage', 'seconds'],
        r.stages.map((s) => [s.name, s.seconds.toFixed(2)]),
      ),
      '',
    );
  }
  if (r.notes.length) out.push('## Notes', '', ...r.notes.map((n) => `- ${escapeControl(n)}`), '');
  return out.join('\n');
}

/** Inline code that survives backticks in the text: a fence longer than any run of backticks inside it. */
function codeSpan(text: string): string {
  const clean = escapeControl(text);
  const longest = Math.max(0, ...(clean.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longest + 1);
  const pad = clean.startsWith('`') || clean.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${clean}${pad}${fence}`;
}
