/**
 * Text from a file (node and value names, paths, messages) on its way to a terminal or a report: control
 * characters (ESC, OSC, CR, NUL, C1) are shown as `\xNN` escapes so a hostile name can neither move the
 * cursor, retitle the terminal nor hide what comes before it on the line.
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

export function escapeControl(text: string, keepNewlines = false): string {
  return text.replace(CONTROL, (c) =>
    keepNewlines && c === '\n'
      ? c
      : c.charCodeAt(0) < 0x100
        ? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`
        : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** A table cell or inline text in Markdown: control characters escaped, and the characters that end a cell or start code, emphasis or a link escaped too. */
export function escapeMarkdown(text: string): string {
  return escapeControl(text).replace(/[\\`*_[\]<>|#]/g, (c) => `\\${c}`);
}
