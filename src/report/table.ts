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

function cellText(c: Cell): string {
  if (c === undefined || c === null) return '';
  if (typeof c === 'number' || typeof c === 'bigint')
    return Number.isInteger(Number(c)) ? formatCount(c) : String(c);
  return c;
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
