/** The first line of an error's message: user errors are printed on one line. */
export function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e)
    .split('\n')[0]!
    .trim();
}

/** A short reason for a failed file operation, for one-line user errors. */
export function fsErrorReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  const reasons: Record<string, string> = {
    ENOENT: 'no such file or folder',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    ENOTDIR: 'a path component is not a folder',
    EISDIR: 'is a folder, not a file',
    EMFILE: 'too many open files',
  };
  return (code && reasons[code]) ?? code ?? firstLine(e);
}

/**
 * Parses JSON read from a file. A failure names only where the text stops being JSON (line and column), never
 * the text itself: the file may be anything (`--spec /etc/passwd`), and JSON.parse's message quotes it.
 */
export function parseJsonText(text: string): { value: unknown } | { error: string } {
  try {
    return { value: JSON.parse(text) };
  } catch {
    const at = jsonErrorOffset(text);
    if (at === undefined) return { error: 'not valid JSON' };
    const before = text.slice(0, at);
    const line = before.split('\n').length;
    const column = at - before.lastIndexOf('\n');
    return { error: `not valid JSON at line ${line}, column ${column}` };
  }
}

/**
 * The offset of the first character that cannot continue valid JSON: the longest prefix JSON.parse calls
 * merely unfinished, found by bisection (a prefix of a valid prefix is valid). Undefined on large texts.
 */
function jsonErrorOffset(text: string): number | undefined {
  if (text.length > 16 << 20) return undefined;
  const unfinished = (k: number): boolean => {
    try {
      JSON.parse(text.slice(0, k));
      return true;
    } catch (e) {
      // Cut short: V8 says so, or names the position just past the prefix ("Expected ',' or ']' after ...").
      const message = String((e as Error).message);
      const position = /at position (\d+)/.exec(message)?.[1];
      return /end of JSON input|Unterminated string/i.test(message) || Number(position) === k;
    }
  };
  let lo = 0; // a valid prefix
  let hi = text.length; // not one (the whole text failed)
  if (!unfinished(0)) return 0;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (unfinished(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}
