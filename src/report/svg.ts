import type { PruneReport } from './types.js';
import { budgetText, formatApprox, formatPercent, speedup } from './table.js';
import { measureLabels } from './measure.js';

const COLORS = {
  before: '#c9d6ea',
  after: '#2f6db5',
  frozen: '#b0b0b0',
  text: '#1f2933',
  grid: '#e4e7eb',
  accent: '#d9822b',
};

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function baseName(file: string): string {
  return file.split(/[\\/]/).pop() || file;
}

/** Approximate advance of one character of the sans-serif font, per pixel of font size. */
const CHAR_WIDTH = 0.5;

/**
 * Splits `text` into lines that fit `widthPx` at `fontSize`, breaking at a separator (` · `, three spaces) or
 * else a space; a word longer than a line is cut hard rather than run past the edge.
 */
export function wrapLine(text: string, widthPx: number, fontSize: number): string[] {
  const max = Math.max(8, Math.floor(widthPx / (fontSize * CHAR_WIDTH)));
  const lines: string[] = [];
  let rest = text.trim();
  while (rest.length > max) {
    const window = rest.slice(0, max + 1);
    // A separator between items first (so an item stays whole), else the last space.
    const separator = Math.max(window.lastIndexOf(' · '), window.lastIndexOf('   '));
    const at = separator > max / 3 ? separator : window.lastIndexOf(' ');
    const cut = at > 0 ? at : max;
    lines.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).replace(/^\s*(· )?/, '');
  }
  if (rest) lines.push(rest);
  return lines;
}

/** A candidate by its channels, widths and rounding: `l1 · structural, round 8`, `l1 · bn, round 4, trial 2`. */
function candidateLabel(c: { criterion: string; widths?: string; roundTo?: number }): string {
  if (!c.widths) return c.criterion;
  const rounding =
    c.roundTo !== undefined && c.widths !== 'the plan' && !/round \d/.test(c.widths)
      ? `, round ${c.roundTo}`
      : '';
  const [source, ...rest] = c.widths.split(', ');
  return `${c.criterion} · ${[`${source}${rounding}`, ...rest].join(', ')}`;
}

/**
 * A self-contained SVG (no scripts, no external fonts or images) so it renders the same in a browser, in
 * Netron's neighbourhood of tools, and in a Markdown viewer: a summary header, per-group widths before/after,
 * accuracy by stage, and the criteria the adaptive step compared.
 */
export function renderReportSvg(r: PruneReport): string {
  const groups = r.groups;
  const barW = 14;
  const gap = 6;
  const chartLeft = 60;
  const chartH = 220;
  const width = Math.max(1000, chartLeft + groups.length * (barW + gap) + 40);
  const maxWidth = Math.max(1, ...groups.map((g) => g.before));
  const y = (c: number): number => chartTop + chartH - (c / maxWidth) * chartH;
  const parts: string[] = [];
  const text = (x: number, yy: number, s: string, attrs = ''): void => {
    parts.push(`<text x="${x}" y="${yy}" ${attrs}>${esc(s)}</text>`);
  };
  /** Wrapped text from `yy` down; returns the y of the line after it. */
  const para = (x: number, yy: number, s: string, fontSize = 13, lineHeight = 18): number => {
    for (const line of wrapLine(s, width - x - 20, fontSize)) {
      text(x, yy, line, fontSize === 13 ? '' : `font-size="${fontSize}"`);
      yy += lineHeight;
    }
    return yy;
  };

  text(
    20,
    32,
    `adapruner: ${baseName(r.input)} → ${baseName(r.output)}`,
    'font-size="18" font-weight="bold"',
  );
  const macRatio = r.after.macs / r.before.macs;
  const paramRatio = r.after.params / r.before.params;
  const lat =
    r.before.latencyMs !== undefined && r.after.latencyMs !== undefined
      ? ` · latency ${r.before.latencyMs.toFixed(2)} → ${r.after.latencyMs.toFixed(2)} ms (${speedup(r.before.latencyMs, r.after.latencyMs)})`
      : '';
  const kept = r.kept ? ` · written: ${r.kept.stage} (${r.kept.reason})` : '';
  const summary =
    `MACs ${formatApprox(r.before.macs)} → ${formatApprox(r.after.macs)} (${formatPercent(macRatio)}) · params ${formatApprox(r.before.params)} → ${formatApprox(r.after.params)} (${formatPercent(paramRatio)})${lat}` +
    ` · budget: ${budgetText(r.budget)} · criterion: ${r.chosenCriterion}${kept}`;
  // The header may wrap to more lines: the chart moves down by as many.
  const headerEnd = para(20, 58, summary);
  const chartTop = Math.max(130, headerEnd + 50);

  // Per-group widths.
  text(
    chartLeft,
    chartTop - 18,
    'Channels per group (light: before, dark: after, grey: frozen)',
    'font-weight="bold"',
  );
  for (let k = 0; k <= 4; k++) {
    const c = Math.round((maxWidth * k) / 4);
    parts.push(
      `<line x1="${chartLeft - 4}" x2="${width - 20}" y1="${y(c)}" y2="${y(c)}" stroke="${COLORS.grid}"/>`,
    );
    text(chartLeft - 8, y(c) + 4, String(c), 'text-anchor="end" font-size="11"');
  }
  groups.forEach((g, i) => {
    const x = chartLeft + i * (barW + gap);
    parts.push(
      `<rect class="before" x="${x}" y="${y(g.before)}" width="${barW}" height="${y(0) - y(g.before)}" fill="${COLORS.before}"><title>${esc(`${g.label}: ${g.before}`)}</title></rect>`,
    );
    parts.push(
      `<rect class="after" x="${x + 2}" y="${y(g.after)}" width="${barW - 4}" height="${y(0) - y(g.after)}" fill="${g.frozen ? COLORS.frozen : COLORS.after}"><title>${esc(`${g.label}: ${g.before} → ${g.after}${g.frozen ? ` (frozen: ${g.frozen})` : ''}`)}</title></rect>`,
    );
    parts.push(
      `<text x="${x + barW / 2}" y="${y(0) + 10}" font-size="9" transform="rotate(60 ${x + barW / 2} ${y(0) + 10})">${esc(g.label.slice(0, 24))}</text>`,
    );
  });

  // Accuracy by stage and the criteria table.
  let top = chartTop + chartH + 150;
  text(20, top, 'Top-1 by stage', 'font-weight="bold"');
  const accW = 320;
  r.accuracy.forEach((a, i) => {
    const yy = top + 14 + i * 22;
    text(20, yy + 12, a.stage, 'font-size="12"');
    parts.push(
      `<rect class="accuracy" x="120" y="${yy}" width="${Math.max(1, a.top1 * accW)}" height="16" fill="${COLORS.after}"/>`,
    );
    text(126 + a.top1 * accW, yy + 12, formatPercent(a.top1), 'font-size="12"');
  });
  if (r.criteria.length) {
    const left = 540;
    text(left, top, 'Candidates (proxy on the calibration split)', 'font-weight="bold"');
    const labelW = width - left - 20 - 170;
    r.criteria.forEach((c, i) => {
      const yy = top + 26 + i * 20;
      const attrs = `font-size="12"${c.chosen ? ` font-weight="bold" fill="${COLORS.accent}"` : ''}`;
      const label = wrapLine(candidateLabel(c), labelW - 14, 12)[0]!;
      text(left, yy, `${c.chosen ? '▶ ' : '  '}${label}`, attrs);
      text(left + labelW, yy, `${measureLabels(r).score} ${formatPercent(c.top1)}`, attrs);
      text(left + labelW + 100, yy, `loss ${c.loss.toFixed(3)}`, attrs);
    });
  }
  top += 26 + Math.max(r.accuracy.length, r.criteria.length + 1) * 22;
  if (r.stages.length) {
    text(20, top, 'Time per stage', 'font-weight="bold"');
    top = para(20, top + 18, r.stages.map((s) => `${s.name} ${s.seconds.toFixed(1)} s`).join(' · '), 12, 16);
    top += 4;
  }
  const height = top + 20;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13" fill="${COLORS.text}">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
