import { ClassFilters, bnClassScores } from './criteria.js';
import type { GroupAnalysis } from './groups.js';

export interface Importance {
  /** Per group, in [0, 1] (1 = the most important group). Frozen groups get 1. */
  scores: number[];
  source: 'bn' | 'filter-norm';
  warning?: string;
}

export const BN_FOLDED_WARNING =
  'the model has no BatchNormalization (BN was folded at export), so group importance falls back to normalised ' +
  'filter norms; export with training=torch.onnx.TrainingMode.PRESERVE to keep BN';

/**
 * Block importance as in AdaPruner: a group's score is the mean |gamma| of the BatchNormalization layers in it.
 * Without any BN in the model, the score is the mean RMS of the group's producing filters (the RMS rather than
 * the norm, so that filters of different fan-in compare). Groups without either score are treated as average.
 * Scores are divided by the largest, so the width search sees values in [0, 1].
 */
export function groupImportance(
  analysis: GroupAnalysis,
  filters: readonly ClassFilters[] = analysis.groups.map((g) => new ClassFilters(g)),
): Importance {
  const hasBn = analysis.groups.some((g) => g.norms.length > 0);
  const raw = analysis.groups.map((group, i) => {
    if (group.frozen.length) return undefined;
    if (hasBn) {
      const s = bnClassScores(group);
      return s ? mean(s) : undefined;
    }
    if (group.producers.length === 0) return undefined;
    const f = filters[i]!;
    return mean(f.norms().sq.map((q) => Math.sqrt(q / Math.max(1, f.dim))));
  });
  const known = raw.filter((x): x is number => x !== undefined);
  const max = Math.max(...known, 1e-30);
  const avg = known.length ? mean(known) / max : 1;
  return {
    scores: raw.map((x, i) => (analysis.groups[i]!.frozen.length ? 1 : x === undefined ? avg : x / max)),
    source: hasBn ? 'bn' : 'filter-norm',
    warning: hasBn ? undefined : BN_FOLDED_WARNING,
  };
}

function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return xs.length ? s / xs.length : 0;
}
