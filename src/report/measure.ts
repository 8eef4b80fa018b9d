import type { PruneReport } from './types.js';

/** Column names for the stage scores: top-1 and loss on labels, or fidelity R² and error without them. */
export function measureLabels(r: Pick<PruneReport, 'measure'>): { score: string; loss: string } {
  return r.measure === 'fidelity'
    ? { score: 'fidelity R²', loss: 'error' }
    : { score: 'top-1', loss: 'loss' };
}
