import { UserError } from '../errors.js';

/** What a numeric option accepts; every value must also be finite. */
export interface NumberRule {
  int?: boolean;
  /** Inclusive bounds. */
  min?: number;
  max?: number;
  /** Exclusive bounds. */
  above?: number;
  below?: number;
}

/** Largest batch any command accepts: far above what fits a CNN's activations, far below a typed-array overflow. */
export const MAX_BATCH = 65536;

export const positiveInt: NumberRule = { int: true, min: 1 };
export const count: NumberRule = { int: true, min: 0 };
export const batchSize: NumberRule = { int: true, min: 1, max: MAX_BATCH };
export const seed: NumberRule = { int: true, min: 0, max: 2 ** 32 - 1 };
export const threads: NumberRule = { int: true, min: 1, max: 1024 };
export const pixels: NumberRule = { int: true, min: 1, max: MAX_BATCH };
export const fraction: NumberRule = { above: 0, max: 1 };
/** SAM's radius (`--sam`, `--finetune-sam`); 0 is off, and the paper's CIFAR value is 0.05. */
export const SAM_RADIUS: NumberRule = { min: 0, max: 10 };

/**
 * Checks the numeric options a command was given against `rules` (keys in camelCase, as yargs hands them
 * over), so NaN, infinities and out-of-range values stop with one line naming the flag before any work.
 */
export function checkNumbers(argv: Record<string, unknown>, rules: Record<string, NumberRule>): void {
  for (const [key, rule] of Object.entries(rules)) {
    const value = argv[key];
    if (value === undefined) continue;
    const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    if (Array.isArray(value)) throw new UserError(`${flag} is given more than once`);
    const problem = describeProblem(value, rule);
    if (problem) throw new UserError(`${flag} must be ${problem}, not ${String(value)}`);
  }
}

function describeProblem(value: unknown, r: NumberRule): string | undefined {
  const want = [
    r.int ? 'an integer' : 'a number',
    r.min !== undefined ? `>= ${r.min}` : r.above !== undefined ? `> ${r.above}` : '',
    r.max !== undefined ? `<= ${r.max}` : r.below !== undefined ? `< ${r.below}` : '',
  ]
    .filter(Boolean)
    .join(' ');
  if (typeof value !== 'number' || !Number.isFinite(value)) return want;
  if (r.int && !Number.isSafeInteger(value)) return want;
  if (r.min !== undefined && value < r.min) return want;
  if (r.max !== undefined && value > r.max) return want;
  if (r.above !== undefined && !(value > r.above)) return want;
  if (r.below !== undefined && !(value < r.below)) return want;
  return undefined;
}
