import { escapeControl } from '../escape.js';
/** A column of a plain-text table: its header, and whether numbers line up on the right. */
export interface Column {
  header: string;
  align?: 'left' | 'right';
}

export type Cell = string | number | bigint | undefined | null;

/** `1234567` -> `1,234,567`; non-integers keep their digits after the point. */
export function formatCount(n: number | bigint): string {
  const [int, frac] = String(n).split('.');
  const sign = int!.startsWith('-') ? '-' : '';
  const digits = sign ? int!.slice(1) : int!;
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return sign + grouped + (frac !== undefined ? `.${frac}` : '');
}

/** `125485696` -> `125.49M`: short figures for summaries, beside the exact count. */
export function formatShort(n: number): string {
  const units: [number, string][] = [
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'K'],
  ];
  for (const [scale, unit] of units) if (Math.abs(n) >= scale) return `${(n / scale).toFixed(2)}${unit}`;
  return String(n);
}

/** `125485696` -> `125.49 M`: the approximate counts of the pruning reports. */
export function formatApprox(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return String(n);
}

/** A fraction as a percentage with two decimals: `0.4988` -> `49.88%`. */
export function formatPercent(fraction: number): string {
  return `${(fraction * 100).toFixed(2)}%`;
}

/**
 * The report's budget line: `flops 50.00%, achieved 49.94%`, or for a saved plan
 * `plan p.json (made for flops 50.00%), flops achieved 49.94%`.
 */
export function budgetText(b: { kind: string; target?: number; achieved: number; plan?: string }): string {
  const achieved = `achieved ${formatPercent(b.achieved)}`;
  if (b.plan === undefined) return `${b.kind} ${formatPercent(b.target ?? 1)}, ${achieved}`;
  const madeFor = b.target === undefined ? '' : ` (made for ${b.kind} ${formatPercent(b.target)})`;
  return `plan ${b.plan}${madeFor}, ${b.kind} ${achieved}`;
}

/** "1.88x faster" or "1.16x slower": a ratio below 1 read as a speed-up confuses. */
export function speedup(beforeMs: number, afterMs: number): string {
  return beforeMs >= afterMs
    ? `${(beforeMs / afterMs).toFixed(2)}x faster`
    : `${(afterMs / beforeMs).toFixed(2)}x slower`;
}

function cellText(c: Cell): string {
  if (c === undefined || c === null) return '';
  if (typeof c === 'number' || typeof c === 'bigint')
    return Number.isInteger(Number(c)) ? formatCount(c) : String(c);
  return escapeControl(c);
}

/**
 * Lays rows out in aligned columns separated by two spaces, with a dashed rule under the header. Numbers are
 * written with thousands separators; columns default to right alignment when every cell in them is a number.
 */
export function renderTable(
  columns: readonly (Column | string)[],
  rows: readonly (readonly Cell[])[],
): string {
  const cols = columns.map((c) => (typeof c === 'string' ? { header: c } : c));
  const texts = rows.map((r) => cols.map((_, i) => cellText(r[i])));
  const align = cols.map(
    (c, i) =>
      c.align ??
      (rows.length > 0 && rows.every((r) => r[i] === undefined || r[i] === null || typeof r[i] !== 'string')
        ? 'right'
        : 'left'),
  );
  const widths = cols.map((c, i) => Math.max(c.header.length, ...texts.map((t) => t[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((t, i) => (align[i] === 'right' ? t.padStart(widths[i]!) : t.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(cols.map((c) => c.header)), line(widths.map((w) => '-'.repeat(w))), ...texts.map(line)].join(
    '\n',
  );
}

/** `key: value` lines with the values aligned. */
export function renderKeyValues(pairs: readonly (readonly [string, Cell])[]): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length + 1));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)} ${cellText(v)}`.trimEnd()).join('\n');
}
