import { NO_BATCHNORM_WARNING, batchNormReport } from '../analysis/bn-report.js';
import { frozenBreakdown } from '../analysis/frozen-share.js';
import { BudgetUnreachableError, UserError } from '../errors.js';
import { packageInfo } from '../package-root.js';
import { releaseLoadedFile, type Model } from '../ir/index.js';
import { PassManager, type Pass, type PassResult } from '../passes/pass-manager.js';
import { ClassFilters, classPriority, multiPositionReaders, type Criterion } from './criteria.js';
import { validateModel, type ValidationResult } from '../runtime/validate.js';
import { compensationTargets, type CompensationScope, type CompensationTarget } from './compensate.js';
import { taylorPriority } from './taylor.js';
import { snapToTies, tieEqualSplits, unequalSplit } from './torch-compatible.js';
import { convMacShare, jitterScores, widthScores, type WidthSource } from './width-prior.js';
import { analyzeGroups, groupRows, type GroupAnalysis, type GroupRow } from './groups.js';
import { groupImportance, type Importance } from './importance.js';
import { PLAN_FORMAT, PLAN_VERSION, anchorOf, validatePlan, type Plan } from './plan.js';
import { probeInputDims, probeShapes } from '../shapes/probe.js';
import { applyKeep } from './rewrite.js';
import {
  CostModel,
  reserveBranchMinimums,
  searchWidths,
  widthRule,
  type Cost,
  type SearchResult,
  type WideRounding,
} from './width-search.js';

export { CRITERIA, parseCriterion, type Criterion } from './criteria.js';
export { PLAN_SCHEMA, readPlanFile, validatePlan, type Plan, type PlanGroup } from './plan.js';
export type { GroupAnalysis, GroupRow } from './groups.js';
export type { Cost, SearchResult, WideRounding } from './width-search.js';
export { WIDTH_SOURCES, parseWidthSource, type WidthSource } from './width-prior.js';
export { taylorScores, TaylorProbe } from './taylor.js';
export {
  compensateModel,
  type CompensationScope,
  type CompensationTarget,
  type CompensationReport,
} from './compensate.js';
export { probeShapes, type ProbeResult } from '../shapes/probe.js';

export interface PruneOptions {
  /** Fraction of the original MACs to keep. */
  flops?: number;
  /** Fraction of the original parameters to keep. */
  params?: number;
  criterion?: Criterion;
  uniform?: boolean;
  /** Where the keep ratios come from (width-prior.ts); default `bn` (the paper's), `uniform` with `uniform`. */
  widths?: WidthSource;
  /** Perturb the width source's multipliers (jitterScores): one neighbour of its width vector per seed. */
  widthJitter?: { seed: number; sigma: number };
  roundTo?: number;
  /** Coarser multiples for wide groups (width-search.ts roundingUnit); prune's default, not --round-to's. */
  wideRounding?: WideRounding;
  /** Without a minChannels: the floor every group keeps where it leaves most of the budget free (planPrune). */
  blockFloor?: BlockFloor;
  /** Which layers the plan's compensation targets name (default `consumers`). */
  compensationScope?: CompensationScope;
  /** Fewest channels any group keeps (default 1). */
  minChannels?: number;
  /** Smallest fraction of its channels any group keeps (default 0.1). */
  minFraction?: number;
  seed?: number;
  /** Per group, a score per channel class (higher kept first): the `taylor` criterion's measured importance. */
  classScores?: readonly (ArrayLike<number> | undefined)[];
  /**
   * Keep equal channel counts in the parts of every equal channel split (torch's `chunk`, ShuffleNetV2), so that
   * `export-torch` can slice the PyTorch module to the plan (torch-compatible.ts). A given plan is checked.
   */
  torchCompatible?: boolean;
  /** A parsed plan to re-apply instead of searching. */
  plan?: unknown;
  /** Where `plan` came from, for error messages. */
  planSource?: string;
  /** Verify and run the pruned model in onnxruntime (default true). */
  validate?: boolean;
  /** Concrete input dims for inputs whose shape is not fully static beyond the batch. */
  inputShapes?: Record<string, number[]>;
  passManager?: PassManager;
  warn?: (message: string) => void;
}

export interface GroupReport {
  id: number;
  anchor: string;
  members: number;
  before: number;
  after: number;
  importance: number;
  frozen?: string;
}

export interface PruneReport {
  criterion: Criterion | 'custom';
  widthSource: WidthSource;
  importanceSource: 'bn' | 'filter-norm';
  groups: GroupReport[];
  /** The input shapes the budget was counted at (batch 1). */
  inputShapes: Record<string, number[]>;
  original: Cost;
  pruned: Cost;
  search?: Omit<SearchResult, 'widths'>;
  validation?: ValidationResult;
  warnings: string[];
}

export const DEFAULT_MIN_FRACTION = 0.1;

/**
 * Everything pruning reads from a model, computed once: concrete shapes, the channel groups, the filter
 * norms (memoised on first use) and the block importance. Any number of plans are made from one analysis.
 */
export interface PruneAnalysis {
  readonly channels: GroupAnalysis;
  readonly filters: readonly ClassFilters[];
  readonly importance: Importance;
  readonly inputDims: ReadonlyMap<string, number[]>;
}

export interface AnalyzeOptions {
  inputShapes?: Record<string, number[]>;
  passManager?: PassManager;
  warn?: (message: string) => void;
}

/** Analyse once: probe, channel groups, filter norms, block importance. The model is not changed. */
export async function analyzeForPruning(model: Model, options: AnalyzeOptions = {}): Promise<PruneAnalysis> {
  const pm = options.passManager ?? new PassManager();
  const inputDims = probeInputDims(model, options.inputShapes);
  const probe = await timeAsync(pm, 'prune-probe', () => probeShapes(model, inputDims, options.warn));
  const channels = pm.time('prune-groups', () => analyzeGroups(model, probe));
  // Filter norms are read once, by whichever of importance and criterion needs them first.
  const readers = multiPositionReaders(channels);
  const filters = channels.groups.map((g, i) => new ClassFilters(g, readers[i]));
  const importance = pm.time('prune-importance', () => groupImportance(channels, filters));
  return { channels, filters, importance, inputDims };
}

/** Probes and analyses a model: the channel groups, for `inspect --groups` and for pruning. */
export async function analyzeModel(
  model: Model,
  inputShapes?: Record<string, number[]>,
  warn?: (message: string) => void,
): Promise<GroupAnalysis> {
  return analyzeGroups(model, await probeShapes(model, probeInputDims(model, inputShapes), warn));
}

/** Rows describing the channel groups (id, channel count, members, frozen reason). */
export async function describeGroups(
  model: Model,
  inputShapes?: Record<string, number[]>,
  warn?: (message: string) => void,
): Promise<GroupRow[]> {
  return groupRows(await analyzeModel(model, inputShapes, warn));
}

export const applyPlanPass: Pass<
  { analysis: GroupAnalysis; keep: Uint8Array[] },
  PassResult & { model: Model }
> = {
  name: 'prune-rewrite',
  description: 'a copy of the model with every member of every channel group sliced to the kept channels',
  reads: ['channel groups', 'plan'],
  changes: ['initializers', 'node attributes', 'value shapes'],
  run: (_model, { analysis, keep }) => ({ modified: true, model: applyKeep(analysis, keep) }),
};

/** The smallest fractions of the original MACs and params the width limits allow (every prunable group at its
 * narrowest): budgets below these are impossible. Used to bound searches that pick the budget themselves. */
export function budgetFloorOf(
  analysis: PruneAnalysis,
  options: Pick<PruneOptions, 'roundTo' | 'wideRounding' | 'minChannels' | 'minFraction'> = {},
): { flops: number; params: number } {
  const { groups } = analysis.channels;
  const limits = {
    roundTo: options.roundTo ?? 1,
    wide: options.wideRounding,
    minChannels: options.minChannels ?? 1,
    minFraction: options.minFraction ?? DEFAULT_MIN_FRACTION,
  };
  const { priorities, floors } = reserveBranchMinimums(
    analysis.channels,
    groups.map((g) => range(g.size)),
    limits,
  );
  const costModel = new CostModel(analysis.channels, priorities);
  const full = costModel.cost(groups.map((g) => g.size));
  const floor = costModel.cost(
    groups.map((g, i) => (g.frozen.length ? g.size : widthRule(g.size, limits, floors[i]).lo)),
  );
  return { flops: floor.macs / full.macs, params: floor.params / full.params };
}

/** A pruning decision made from an analysis: the plan (JSON data), the keep masks and the report. */
export interface PlannedPrune {
  plan: Plan;
  keep: Uint8Array[];
  /** The layers whose inputs lose channels, for least-squares compensation (names survive the rewrite). */
  targets: CompensationTarget[];
  report: PruneReport;
}

/** Options of one plan; the analysis options (input shapes) are fixed by the analysis. */
export type PlanOptions = Omit<PruneOptions, 'validate' | 'inputShapes'>;

/**
 * Plan many: widths to the budget and channels by the criterion (or a given plan re-checked against the
 * model). Reads the analysis and changes nothing, so any number of plans can share one analysis.
 */
export function planPrune(analysis: PruneAnalysis, given: PlanOptions): PlannedPrune {
  if (given.plan !== undefined) return planAt(analysis, given);
  const options = withBlockFloor(analysis, given);
  if (!options.wideRounding) return planAt(analysis, options);
  // The wide unit is for speed; where its coarser steps keep the budget from landing within 0.5% (a small
  // transformer whose few wide groups step by 1/8), the plain unit is used. Both plans collect their warnings
  // quietly and only the chosen one's reach the caller.
  const quiet = { ...options, warn: undefined };
  let chosen = planAt(analysis, quiet);
  const wideSearch = chosen.report.search;
  if (wideSearch?.note) {
    const plain = planAt(analysis, { ...quiet, wideRounding: undefined });
    if ((plain.report.search?.achievedRatio ?? 0) > wideSearch.achievedRatio) chosen = plain;
  }
  for (const w of chosen.report.warnings) options.warn?.(w);
  return chosen;
}

/**
 * A floor of `channels` for every group, applied to a network with at least `convShare` of its MACs in Conv
 * layers where holding every group at it costs at most `budgetShare` of the budget. Cutting a group below one
 * vector block of channels saves MACs but no time where the CPU computes that block whole (onnxruntime's
 * blocked convolutions on AVX-512 work in 16 channels).
 */
export interface BlockFloor {
  channels: number;
  budgetShare: number;
  convShare: number;
}

/**
 * The options with the block floor as their minChannels where it leaves most of the budget to the search: a
 * detector's 16-channel stem at 320x320 holds a few percent of the MACs (yolov8n at 640x640: the floor is 0.198
 * of them), where ResNet-56's 16-channel first stage holds a third (0.448), and forcing it there cuts the rest
 * of the network to a quarter (docs/pruning.md, "Rounding").
 */
function withBlockFloor(analysis: PruneAnalysis, options: PlanOptions): PlanOptions {
  const floor = options.blockFloor;
  const ratio = options.flops ?? options.params;
  if (!floor || options.minChannels !== undefined || ratio === undefined) return options;
  if (convMacShare(analysis.channels) < floor.convShare) return options;
  // Where a width under one block saves no time, a width of half a block more wastes the rest of that block:
  // under the floor every group whose size is whole blocks keeps whole blocks (the default rounding only).
  const blocks = options.wideRounding && {
    wideRounding: { channels: floor.channels, roundTo: floor.channels },
  };
  const floored = { ...options, minChannels: floor.channels, ...blocks };
  const least = budgetFloorOf(analysis, floored)[options.flops !== undefined ? 'flops' : 'params'];
  return least <= floor.budgetShare * ratio ? floored : options;
}

/** One plan at the given rounding: widths to the budget (or the given plan re-checked), channels by criterion. */
function planAt(analysis: PruneAnalysis, options: PlanOptions): PlannedPrune {
  const pm = options.passManager ?? new PassManager();
  const { warnings, warn } = warningCollector(options.warn);
  if (options.flops !== undefined && options.params !== undefined)
    throw new UserError('give one budget: --flops or --params, not both');
  if (options.plan === undefined && options.flops === undefined && options.params === undefined)
    throw new UserError('give a budget (--flops R or --params R) or a plan (--plan-in FILE)');
  const criterion = options.criterion ?? 'l1';
  const widthSource: WidthSource = options.uniform ? 'uniform' : (options.widths ?? 'bn');
  const seed = options.seed ?? 0;
  const roundTo = options.roundTo ?? 1;
  if (!Number.isInteger(roundTo) || roundTo < 1)
    throw new UserError(`--round-to must be a positive integer, got ${roundTo}`);
  const { channels, filters, importance } = analysis;
  // The importance fallback's warning blames a folding export; a model designed without BN gets its own.
  if (importance.warning)
    warn(batchNormReport(channels.model).bnFolded ? importance.warning : NO_BATCHNORM_WARNING);

  let keep: Uint8Array[];
  let search: SearchResult | undefined;
  let planCriterion: Plan['criterion'] = criterion;
  let planSeed = seed;
  let budget: Plan['budget'];
  const limits = {
    roundTo,
    wide: options.wideRounding,
    minChannels: options.minChannels ?? 1,
    minFraction: options.minFraction ?? DEFAULT_MIN_FRACTION,
  };
  // Each Concat/Split branch's best channels come first, so no width the search may pick empties a branch.
  let { priorities, floors } = pm.time('prune-criterion', () =>
    reserveBranchMinimums(
      channels,
      channels.groups.map((g, i) =>
        g.frozen.length || options.plan !== undefined
          ? range(g.size)
          : criterion === 'taylor'
            ? taylorPriority(g, options.classScores?.[i], seed, warn, filters[i]!)
            : classPriority(g, criterion, seed, warn, filters[i]),
      ),
      limits,
    ),
  );
  const tied =
    options.torchCompatible && options.plan === undefined
      ? tieEqualSplits(channels, priorities, floors)
      : undefined;
  if (tied) ({ priorities, floors } = tied);
  const costModel = new CostModel(channels, priorities);
  if (options.plan !== undefined) {
    const loaded = validatePlan(options.plan, channels, options.planSource);
    keep = loaded.keep;
    planCriterion = loaded.plan.criterion;
    planSeed = loaded.plan.seed;
    budget = loaded.plan.budget;
  } else {
    const kind = options.flops !== undefined ? 'flops' : 'params';
    const ratio = (options.flops ?? options.params)!;
    checkFrozenFloor(channels, costModel.cost(channels.groups.map((g) => g.size)), kind, ratio);
    search = pm.time('prune-width-search', () =>
      searchWidths(channels, costModel, sourceScores(widthSource, channels, importance.scores, options), {
        budget: kind,
        ratio,
        uniform: options.uniform ?? false,
        ...limits,
        floors,
      }),
    );
    if (tied) search = snapToTies(channels, costModel, search, tied, limits, kind);
    if (search.note) warn(search.note);
    keep = channels.groups.map((g, i) => {
      const mask = new Uint8Array(g.size);
      for (const c of priorities[i]!.slice(0, search!.widths[i])) mask[c] = 1;
      return mask;
    });
    budget = {
      kind,
      ratio,
      uniform: options.uniform ?? false,
      roundTo,
      ...(options.wideRounding && { wide: options.wideRounding }),
      ...(limits.minChannels > 1 && { minChannels: limits.minChannels }),
    };
  }
  const unequal = options.torchCompatible ? unequalSplit(channels, keep) : undefined;
  if (unequal) throw new UserError(`the plan is not torch-compatible: ${unequal}`, options.planSource);
  const plan = planOf(channels, keep, planCriterion, planSeed, budget);
  const original = costModel.cost(channels.groups.map((g) => g.size));
  const pruned = costModel.costOfKeep(keep);
  const groups: GroupReport[] = channels.groups.map((g, i) => ({
    id: i,
    anchor: plan.groups[i]!.anchor,
    members: g.spaces.length,
    before: g.size,
    after: plan.groups[i]!.keep.length,
    importance: importance.scores[i]!,
    ...(g.frozen.length ? { frozen: g.frozen.join('; ') } : {}),
  }));
  const { widths: _w, ...searchInfo } = search ?? { widths: [] };
  return {
    plan,
    keep,
    targets: compensationTargets(channels, keep, options.compensationScope),
    report: {
      criterion: planCriterion,
      widthSource,
      importanceSource: importance.source,
      groups,
      inputShapes: Object.fromEntries(analysis.inputDims),
      original,
      pruned,
      ...(search ? { search: searchInfo as Omit<SearchResult, 'widths'> } : {}),
      warnings,
    },
  };
}

/**
 * A budget below what the frozen layers alone cost (attention MatMuls, layers the analysis cannot follow,
 * graph outputs) can never be met: one line that names the floor and what holds it, before any search.
 */
function checkFrozenFloor(
  channels: GroupAnalysis,
  full: Cost,
  kind: 'flops' | 'params',
  ratio: number,
): void {
  const amount = kind === 'flops' ? 'macs' : 'params';
  const frozen = frozenBreakdown(channels, full[amount], amount);
  if (ratio >= frozen.share - 1e-12) return;
  const what = kind === 'flops' ? 'MACs' : 'params';
  const cut = (r: string): string => (r.length > 70 ? `${r.slice(0, 69)}…` : r);
  const reasons = frozen.reasons
    .slice(0, 3)
    .map((r) => `${cut(r.reason)} ×${r.nodes} (${pct(r.amount / full[amount])})`)
    .join('; ');
  throw new BudgetUnreachableError(
    `--${kind} ${ratio} is not achievable: at most ${pct(1 - frozen.share)} of the ${what} can shrink, ` +
      `so the floor is ${pct(frozen.share)}; frozen: ${reasons}`,
  );
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;

function sourceScores(
  source: WidthSource,
  channels: GroupAnalysis,
  bnScores: readonly number[],
  options: PlanOptions,
): number[] {
  const scores = widthScores(source, channels, bnScores, options.params !== undefined ? 'params' : 'flops');
  const jitter = options.widthJitter;
  return jitter ? jitterScores(scores, jitter.seed, jitter.sigma) : scores;
}

/** A prune's warnings, each once: kept for its report and passed on to the caller's `warn`. */
function warningCollector(forward: ((msg: string) => void) | undefined) {
  const warnings: string[] = [];
  const warn = (msg: string): void => {
    if (warnings.includes(msg)) return;
    warnings.push(msg);
    forward?.(msg);
  };
  return { warnings, warn };
}

function planOf(
  channels: GroupAnalysis,
  keep: Uint8Array[],
  criterion: Plan['criterion'],
  seed: number,
  budget: Plan['budget'],
): Plan {
  return {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    criterion,
    seed,
    ...(budget ? { budget } : {}),
    groups: channels.groups.map((g, i) => ({
      id: i,
      channels: g.size,
      anchor: anchorOf(channels, i),
      keep: [...keep[i]!.keys()].filter((c) => keep[i]![c]),
      ...(g.frozen.length ? { frozen: g.frozen.join('; ') } : {}),
    })),
  };
}

/** Apply once: a new model with the plan's channels (the analysed model is unchanged), its record in metadata. */
export function applyPlan(analysis: PruneAnalysis, planned: PlannedPrune, passManager?: PassManager): Model {
  const pm = passManager ?? new PassManager();
  const { model } = pm.run(applyPlanPass, analysis.channels.model, {
    analysis: analysis.channels,
    keep: planned.keep,
  });
  const { report, plan } = planned;
  model.setMetadata(
    'adapruner.pruning',
    JSON.stringify({
      tool: `adapruner ${toolVersion()}`,
      criterion: report.criterion,
      budget: plan.budget,
      original: report.original,
      pruned: report.pruned,
      groups: report.groups.map((g) => ({ id: g.id, anchor: g.anchor, before: g.before, after: g.after })),
    }),
  );
  return model;
}

/**
 * Prunes `model` to a budget (or re-applies a plan): analyse, plan, apply, validate. Returns a new model (the
 * given one is not changed), the plan (JSON data) and a report.
 */
export async function pruneModel(
  model: Model,
  options: PruneOptions,
): Promise<{ model: Model; plan: Plan; report: PruneReport; targets: CompensationTarget[] }> {
  const pm = options.passManager ?? new PassManager();
  const { warnings, warn } = warningCollector(options.warn);
  const analysis = await analyzeForPruning(model, {
    inputShapes: options.inputShapes,
    passManager: pm,
    warn,
  });
  const planned = planPrune(analysis, { ...options, passManager: pm, warn });
  const pruned = applyPlan(analysis, planned, pm);
  // The loaded file's buffer goes before onnxruntime's allocations: the model reads back what it still needs.
  pm.time('prune-release-file', () => releaseLoadedFile(pruned));
  const validation =
    options.validate === false
      ? undefined
      : await timeAsync(pm, 'prune-validate', () => validateModel(pruned, new Map(analysis.inputDims)));
  return {
    model: pruned,
    plan: planned.plan,
    targets: planned.targets,
    report: { ...planned.report, validation, warnings },
  };
}

/** PassManager.time for a stage that awaits (it would otherwise time only the synchronous start). */
async function timeAsync<R>(pm: PassManager, stage: string, fn: () => Promise<R>): Promise<R> {
  const start = performance.now();
  const result = await fn();
  pm.record(stage, performance.now() - start);
  return result;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

export function toolVersion(): string {
  return packageInfo().version;
}
