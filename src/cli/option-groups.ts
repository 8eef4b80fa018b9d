import type { Argv } from 'yargs';
let helpShowsHidden = false;

/** Set from the raw arguments: yargs' own --show-hidden check does not reach a command's --help. */
export function showHiddenOptions(show: boolean): void {
  helpShowsHidden = show;
}

/**
 * Puts a command's options under headings and hides the expert ones (`--help --show-hidden` lists them).
 * Only options the command has are placed, so a group may name options other changes add; an option no group
 * names stays under yargs' own "Options:" heading.
 */
export function groupOptions<T>(
  y: Argv<T>,
  groups: readonly (readonly [heading: string, keys: readonly string[]])[],
  hidden: readonly string[] = [],
): Argv<T> {
  const { key } = (y as unknown as { getOptions(): { key: Record<string, unknown> } }).getOptions();
  const known = new Set(Object.keys(key));
  for (const [heading, keys] of groups) {
    const present = keys.filter((k) => known.has(k));
    if (present.length) y = y.group(present, heading);
  }
  if (!helpShowsHidden) for (const k of hidden) if (known.has(k)) y = y.hide(k);
  return y;
}
