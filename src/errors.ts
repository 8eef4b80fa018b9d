import { escapeControl } from './escape.js';

/**
 * Errors a user caused (bad file, bad flag, impossible budget). The CLI prints `message` on one line and
 * exits with code 2; anything else escaping is a bug. The message is one line with control characters
 * escaped: names and paths come from files that may be hostile.
 */
export class UserError extends Error {
  readonly exitCode = 2;
  constructor(
    message: string,
    readonly file?: string,
    readonly node?: string,
  ) {
    super(UserError.format(message, file, node));
    this.name = 'UserError';
  }

  private static format(message: string, file?: string, node?: string): string {
    const where = [file, node ? `node '${node}'` : undefined].filter(Boolean).join(': ');
    return escapeControl((where ? `${where}: ` : '') + message.replace(/\s*\n\s*/g, ' '));
  }
}

/** A budget below the smallest model the width limits allow; a caller trying several roundings skips that one. */
export class BudgetUnreachableError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'BudgetUnreachableError';
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}
