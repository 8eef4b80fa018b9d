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
