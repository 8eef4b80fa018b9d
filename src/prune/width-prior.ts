import { UserError } from '../errors.js';
import { mulberry32 } from '../data/prng.js';
import type { GroupAnalysis } from './groups.js';

/**
 * Where the per-group keep ratios come from. The width search keeps r_g(t) = min(1, t · m_g) of group g at
 * knob t, bisected to the budget; the sources differ in the multiplier m_g:
 * - `bn`: m_g = 0.5 + s_g with s_g the normalised mean |BN gamma| (the AdaPruner paper's block importance);
 * - `uniform`: m_g = 1 (the same ratio everywhere);
 * - `structural`: m_g = √(readers_g), readers_g the number of layers (conv, Gemm, MatMul; depthwise convs
 *   excluded: they belong to the group) that read the group's channels. A group read by many layers, such as a
 *   residual stream that every block reads and writes, is where a removed channel is lost to every layer at
 *   once; measured on ResNet-56 at 50% MACs, keeping the stream whole and halving the inner convs scores 66.1%
 *   after recalibration against 43.9% for the paper's widths, which cut the stream to 40 of 64 channels;
 * - `structural-bn`: the product of the two, √(readers_g) · (0.5 + s_g).
 */
export const WIDTH_SOURCES = ['bn', 'uniform', 'structural', 'structural-bn'] as const;
export type WidthSource = (typeof WIDTH_SOURCES)[number];

export function parseWidthSource(s: string): WidthSource {
  if ((WIDTH_SOURCES as readonly string[]).includes(s)) return s as WidthSource;
  throw new UserError(`unknown width source '${s}' (expected one of ${WIDTH_SOURCES.join(', ')})`);
}

/** Layers reading each group's channels: nodes with a linear use of them (depthwise and grouped convs decline). */
export function groupReaders(analysis: GroupAnalysis): number[] {
  const readers = analysis.groups.map(() => 0);
  for (const r of analysis.records) {
    const use = r.op.linearUse?.(r.node, r.data);
    if (use && typeof use !== 'string') readers[use.input.group]! += 1;
  }
  return readers;
}

/**
 * The scores the width search takes (it uses m_g = 0.5 + score), for a width source: `bn` passes the BN
 * importance through; the others express their multiplier in that form.
 */
export function widthScores(
  source: WidthSource,
  analysis: GroupAnalysis,
  bnScores: readonly number[],
): number[] {
  if (source === 'bn') return [...bnScores];
  if (source === 'uniform') return analysis.groups.map(() => 0.5);
  const readers = groupReaders(analysis);
  const bnFactor = (i: number): number => (source === 'structural-bn' ? 0.5 + bnScores[i]! : 1);
  return readers.map((r, i) => Math.sqrt(Math.max(1, r)) * bnFactor(i) - 0.5);
}

/**
 * A seeded perturbation of a width source's multipliers, m'_g = m_g · exp(σ·z_g) with z_g ~ N(0, 1): the
 * neighbours of a width vector that the pipeline's refinement recalibrates and scores (the EagleEye search,
 * centred on the chosen source instead of drawn uniformly). Returns scores in the search's m = 0.5 + s form.
 */
export function jitterScores(scores: readonly number[], seed: number, sigma: number): number[] {
  const random = mulberry32(seed);
  const normal = (): number => {
    const u = Math.max(random(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  };
  return scores.map((s) => (0.5 + s) * Math.exp(sigma * normal()) - 0.5);
}
