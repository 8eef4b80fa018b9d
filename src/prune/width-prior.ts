import { UserError } from '../errors.js';
import { mulberry32 } from '../data/prng.js';
import type { GroupAnalysis } from './groups.js';
import { CostModel } from './width-search.js';

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
 * - `structural-bn`: the product of the two, √(readers_g) · (0.5 + s_g);
 * - `capacity`: structural, times (ρ_g / ρ̄)^γ with ρ_g the parameters a channel of g carries per MAC it costs
 *   and ρ̄ their geometric mean (γ = CAPACITY_EXPONENT; under a parameter budget the exponent is −γ). Under a MAC
 *   budget a channel of a deep, low-resolution layer costs as many MACs as one of a shallow layer with a 16x
 *   larger map but carries 16x the weights, so cutting the shallow layers harder keeps more of the network's
 *   capacity for the same MACs. Measured on ResNet-56 at 50% MACs: inner widths 4/16/48 of 16/32/64 per stage
 *   keep 68% of the parameters (the structural widths 50%) and score 70.11% recalibrated against 67.11%, but
 *   no better once compensated or fine-tuned (docs/history.md, "Fourth pass"), so the search does not try it;
 * - `speed`: structural, times (τ̄ / τ_g) in a convolutional network, with τ_g the time a channel of g costs
 *   per MAC it costs (`timePerMac`); the default without data. At a MAC budget the structural widths kept
 *   whole the groups that memory-bound nodes (SiLU, Add, Split, Concat) read and write at high resolution,
 *   where a channel costs more time per MAC than one of a low-resolution convolution; at the same MACs the
 *   `speed` widths ran 1.49x → 1.60x faster than the original on a yolov8n-scale detector (opset 12) and
 *   1.73x → 2.38x on EfficientNet-B0 (docs/history.md, issue 28, "Fourth pass").
 */
export const WIDTH_SOURCES = ['bn', 'uniform', 'structural', 'structural-bn', 'capacity', 'speed'] as const;
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
  budget: 'flops' | 'params' = 'flops',
): number[] {
  if (source === 'bn') return [...bnScores];
  if (source === 'uniform') return analysis.groups.map(() => 0.5);
  const readers = groupReaders(analysis);
  const factor =
    source === 'structural-bn'
      ? (i: number): number => 0.5 + bnScores[i]!
      : source === 'capacity'
        ? relativeFactors(
            analysis,
            paramsPerMac(analysis),
            budget === 'flops' ? CAPACITY_EXPONENT : -CAPACITY_EXPONENT,
          )
        : source === 'speed'
          ? speedFactors(analysis)
          : (): number => 1;
  return readers.map((r, i) => Math.sqrt(Math.max(1, r)) * factor(i) - 0.5);
}

/** γ of the `capacity` source: 1/3 turns ResNet-56's 1:4:16 parameters per MAC into keep ratios near 1:2:3. */
export const CAPACITY_EXPONENT = 1 / 3;

/**
 * Per group, (x_g / x̄)^exponent, x̄ the geometric mean of x over the free groups; 1 for frozen groups and where
 * x_g is not positive. The `capacity` (x = parameters per MAC) and `speed` (x = time per MAC) factors.
 */
function relativeFactors(
  analysis: GroupAnalysis,
  x: readonly number[],
  exponent: number,
): (i: number) => number {
  const free = analysis.groups.filter((g, i) => !g.frozen.length && x[i]! > 0);
  const logMean = free.reduce((sum, g) => sum + Math.log(x[g.id]!), 0) / Math.max(1, free.length);
  return (i) =>
    analysis.groups[i]!.frozen.length || !(x[i]! > 0) ? 1 : Math.exp(exponent * (Math.log(x[i]!) - logMean));
}

/**
 * The time an element written by a memory-bound node costs, in MACs of a convolution: a least-squares fit of
 * batch-1 latency (onnxruntime 1.30 CPU, 1 thread, AVX-512) over the yolov8n-scale export and six of its
 * pruned variants gave 11.8 ms per G convolution MACs (counted at 16-channel blocks) and 0.79 ms per M
 * elements written by nodes outside FUSED_OR_FREE, 1.2 ms rms error.
 */
export const MEMORY_PASS_MACS = 67;

/**
 * Nodes that cost no memory pass of their own: the MAC layers (their outputs are in the MAC count), what
 * onnxruntime fuses into the convolution before them (BatchNormalization, Relu, Clip, LeakyRelu, HardSigmoid),
 * and what moves no data. A SiLU (Sigmoid and Mul, fused into one kernel) counts twice: a static table cannot
 * follow every fusion, and counting both keeps the ranking.
 */
export const FUSED_OR_FREE: ReadonlySet<string> = new Set([
  ...['Conv', 'ConvTranspose', 'Gemm', 'MatMul', 'BatchNormalization', 'Relu', 'Clip', 'LeakyRelu'],
  ...['HardSigmoid', 'Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Identity', 'Dropout'],
]);

/**
 * Per group, τ_g = 1 + MEMORY_PASS_MACS · (elements memory-bound nodes write) / (MACs), both counted for one
 * channel's share of every space of the group (pruning takes from every branch of a Concat or Split alike);
 * 0 where the group's channels cost no MACs.
 */
export function timePerMac(analysis: GroupAnalysis): number[] {
  const macs = analysis.groups.map(() => 0);
  for (const term of analysis.costs) {
    if (term.kind !== 'macs') continue;
    const full = term.spaces.reduce((v, sp) => v * sp.size, term.coef);
    for (const sp of term.spaces) macs[sp.group]! += full / analysis.groups[sp.group]!.size;
  }
  const elements = analysis.groups.map(() => 0);
  for (const s of analysis.spaces) {
    const op = s.value.producer?.opType;
    const dims = analysis.probe.dims.get(s.value);
    if (!op || FUSED_OR_FREE.has(op) || !dims) continue;
    elements[s.group]! += dims.reduce((a, b) => a * b, 1) / analysis.groups[s.group]!.size;
  }
  return macs.map((m, g) => (m > 0 ? 1 + (MEMORY_PASS_MACS * elements[g]!) / m : 0));
}

/**
 * Per group, τ̄ / τ_g (τ̄ the geometric mean over the free groups), in a network with at least half its MACs
 * in Conv layers; 1 elsewhere, and for frozen groups. The table was fitted on convolutions; on Swin-T it would
 * move the MLP widths, which nothing measured supports.
 */
function speedFactors(analysis: GroupAnalysis): (i: number) => number {
  if (convMacShare(analysis) < CONV_NETWORK_SHARE) return () => 1;
  return relativeFactors(analysis, timePerMac(analysis), -1);
}

/**
 * The share of MACs in Conv layers from which a network counts as convolutional: the rules measured on
 * convolutions (the `speed` widths, the block floor) leave the others (transformers) alone.
 */
export const CONV_NETWORK_SHARE = 0.5;

/** The share of the unpruned network's MACs computed by Conv layers. */
export function convMacShare(analysis: GroupAnalysis): number {
  let conv = 0;
  let total = 0;
  for (const term of analysis.costs) {
    if (term.kind !== 'macs') continue;
    const macs = term.spaces.reduce((v, sp) => v * sp.size, term.coef);
    total += macs;
    if (term.node.opType === 'Conv') conv += macs;
  }
  return total > 0 ? conv / total : 0;
}

/**
 * Per group, the parameters its channels carry per MAC they cost: the change in both when the group alone
 * drops to half its width (every cost term is linear in each space's count, so any step gives the same ratio
 * for groups that only scale terms). 0 where halving saves no MACs.
 */
export function paramsPerMac(analysis: GroupAnalysis): number[] {
  const full = analysis.groups.map((g) => g.size);
  const costs = new CostModel(
    analysis,
    analysis.groups.map((g) => Array.from({ length: g.size }, (_, c) => c)),
  );
  const base = costs.cost(full);
  return analysis.groups.map((g, i) => {
    const halved = costs.cost(full.map((w, j) => (j === i ? Math.floor(g.size / 2) : w)));
    const macs = base.macs - halved.macs;
    return macs > 0 ? (base.params - halved.params) / macs : 0;
  });
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
