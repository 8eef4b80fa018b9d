import { UserError } from '../errors.js';

/** The learning-rate schedules, in the order the CLI and errors list them. */
export const SCHEDULE_KINDS = ['cosine', 'linear', 'step', 'constant'] as const;
export type ScheduleKind = (typeof SCHEDULE_KINDS)[number];

export interface ScheduleOptions {
  kind?: ScheduleKind;
  /** Linear warm-up from lr/steps to lr over this many steps. */
  warmupSteps?: number;
  /** `step`: multiply by `gamma` (default 0.1) every `stepSize` steps (default: half of the post-warm-up steps). */
  stepSize?: number;
  gamma?: number;
}

/** The learning rate of step `step` (0-based) of `total`. It is a graph input, so any schedule is free. */
export function learningRate(base: number, step: number, total: number, o: ScheduleOptions = {}): number {
  const warmup = o.warmupSteps ?? 0;
  if (step < warmup) return (base * (step + 1)) / warmup;
  const t = step - warmup;
  const span = Math.max(1, total - warmup);
  switch (o.kind ?? 'cosine') {
    case 'cosine':
      return 0.5 * base * (1 + Math.cos((Math.PI * t) / span));
    case 'linear':
      return base * (1 - t / span);
    case 'step':
      return base * (o.gamma ?? 0.1) ** Math.floor(t / Math.max(1, o.stepSize ?? Math.ceil(span / 2)));
    case 'constant':
      return base;
    default:
      throw new UserError(
        `unknown learning-rate schedule '${String(o.kind)}' (${SCHEDULE_KINDS.join(', ')})`,
      );
  }
}
