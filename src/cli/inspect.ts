import { escapeControl } from '../escape.js';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { BN_KEEPING_EXPORT, batchNormReport, type BatchNormReport } from '../analysis/bn-report.js';
import { countCostProbed, dataInputs, type CostReport } from '../analysis/cost.js';
import { INPUT_SHAPE_OPTION, inputShapesFor } from './input-shape.js';
import { dataTypeName } from '../ir/data-type.js';
import type { Value } from '../ir/graph.js';
import { loadModel } from '../ir/load.js';
import { checkModelForInspect } from '../runtime/preflight.js';
import type { Model } from '../ir/model.js';
import { shapeToString, type Dim } from '../ir/types.js';
import { cleanupPipeline } from '../passes/index.js';
import { PassManager } from '../passes/pass-manager.js';
import { frozenBreakdown } from '../analysis/frozen-share.js';
import { groupRows } from '../prune/groups.js';
import { analyzeModel, type GroupRow } from '../prune/index.js';
import {
  ModuleNames,
  modulePathOfParameter,
  modulePathOfScopedName,
  summarizeReasons,
} from '../report/module-names.js';
import { formatCount, formatShort, renderKeyValues, renderTable } from '../report/table.js';

interface InspectArgs {
  model: string;
  json: boolean;
  inputShape?: string | string[];
  layers: boolean;
  [option: string]: unknown;
}

interface TensorInfo {
  name: string;
  elemType: string;
  shape: Dim[] | null;
}

/** What `inspect --json` prints; the key names are stable (docs/cost-model.md). */
export interface InspectReport {
  file: string;
  irVersion: number;
  opsets: { domain: string; version: number }[];
  producer: { name: string | null; version: string | null };
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  nodes: number;
  ops: Record<string, number>;
  inputShapes: Record<string, number[]>;
  macs: number;
  macsByOp: Record<string, number>;
  params: { trainable: number; convLinear: number; bnAffine: number; bnRunningStats: number };
  batchNorm: BatchNormReport;
  /** Per-layer costs; `module` is the PyTorch module path (the raw node name is `name`). */
  layers: (CostReport['perNode'][number] & { module: string })[];
  [section: string]: unknown;
}

/**
 * An optional extra part of the report, switched on by its own flag. The channel-groups report (`--groups`)
 * plugs in here: add its entry to `extraSections`; its `json` goes under `key` in `--json` output.
 */
export interface InspectSection {
  flag: string;
  describe: string;
  key: string;
  /** May be async (the channel analysis can fall back to an onnxruntime run). */
  collect(
    model: Model,
    report: InspectReport,
  ): { json: unknown; text: string } | Promise<{ json: unknown; text: string }>;
}

/** `--groups`: the channel groups the pruner sees (src/prune/groups.ts), at the shapes MACs are counted at. */
const groupsSection: InspectSection = {
  flag: 'groups',
  describe: 'List channel groups: channel count, members and why a group is frozen',
  key: 'groups',
  async collect(model, report) {
    // The cleanup prune runs before its analysis (Identity removal, constant folding: ConvNeXt's transposed
    // Linear weights become constants), so the groups listed are the ones prune sees. The rest of the report
    // was made from the file as it is.
    cleanupPipeline(new PassManager(), model);
    const analysis = await analyzeModel(model, report.inputShapes, (msg) =>
      process.stderr.write(`warning: ${escapeControl(msg)}\n`),
    );
    const rows = groupRows(analysis);
    const frozen = frozenBreakdown(analysis, report.macs);
    report.frozenMacShare = frozen.share;
    report.frozenFilterMacShare = frozen.byFilters;
    const names = ModuleNames.of(model);
    const labelled = rows.map((r) => ({
      ...r,
      module: names.value(r.members[0]!.replace(/\[\d+\]$/, '')),
      memberModules: r.members.map((m) => {
        const [, value, size] = /^(.*)(\[\d+\])$/.exec(m)!;
        return names.value(value!) + size!;
      }),
    }));
    return { json: labelled, text: renderGroups(labelled, frozen) };
  },
};

const extraSections: InspectSection[] = [groupsSection];

/** A group row with PyTorch module paths: of its first member (`module`) and of every member. */
export type LabelledGroupRow = GroupRow & { module: string; memberModules: string[] };

/**
 * A table of groups (labelled by module path, frozen reasons cut to one line), then each group's members
 * (`module[channels]`, `@axis` when not axis 1), wrapped. `--json` has the raw value names and whole reasons.
 */
export function renderGroups(
  rows: readonly LabelledGroupRow[],
  frozenMacs?: { share: number; byFilters: number },
): string {
  const frozen = rows.filter((r) => r.frozen !== undefined).length;
  const share =
    frozenMacs === undefined
      ? ''
      : `; ${(100 * frozenMacs.share).toFixed(1)}% of MACs in frozen groups, ${(100 * frozenMacs.byFilters).toFixed(1)}% in layers whose filters cannot shrink`;
  const table = renderTable(
    [
      'group',
      { header: 'channels', align: 'right' },
      { header: 'members', align: 'right' },
      'module',
      'frozen',
    ],
    rows.map((r) => [r.id, r.channels, r.members.length, r.module, summarizeReasons(r.frozen)]),
  );
  const members = rows.map((r) => wrapList(`  ${r.id}: `, r.memberModules)).join('\n');
  return `channel groups (${rows.length}: ${rows.length - frozen} prunable, ${frozen} frozen${share}):\n${table}\n\nmembers (--json lists value names and every frozen reason):\n${members}`;
}

/** The BN notice wrapped in words, with the re-export call (kept whole, for copying) on a line of its own. */
function renderNote(notice: string): string {
  const at = notice.indexOf(BN_KEEPING_EXPORT);
  const prose = at >= 0 ? notice.slice(0, at).trim() : notice;
  const wrapped = wrapList('note: ', prose.split(' '), 110, '');
  return at >= 0 ? `${wrapped}\n  ${notice.slice(at).trim()}` : wrapped;
}

/** `head` then the items joined by `sep` and a space, wrapped at `width` columns, continuation lines indented. */
function wrapList(head: string, items: readonly string[], width = 110, sep = ','): string {
  const lines: string[] = [];
  let line = head;
  for (const [i, item] of items.entries()) {
    const piece = item + (i < items.length - 1 ? sep : '');
    if (line.length > head.length && line.length + 1 + piece.length > width) {
      lines.push(line);
      line = ' '.repeat(head.length) + piece;
    } else line += (line.length > head.length ? ' ' : '') + piece;
  }
  lines.push(line);
  return lines.join('\n');
}

export const inspectCommand: CommandModule<object, InspectArgs> = {
  command: 'inspect <model>',
  describe: 'Show a model: inputs/outputs, opsets, op histogram, params and MACs per image, per-layer costs',
  builder: (y) => {
    let b = y
      .positional('model', { type: 'string', demandOption: true, describe: 'ONNX file' })
      .option('json', { type: 'boolean', default: false, describe: 'Print one JSON object instead of text' })
      .option('input-shape', {
        ...INPUT_SHAPE_OPTION,
        describe: 'Input shape to count MACs at, e.g. 1x3x224x224 (NAME=SHAPE per input; batch counts as 1)',
      })
      .option('layers', { type: 'boolean', default: false, describe: 'Print the per-layer table' });
    for (const s of extraSections)
      b = b.option(s.flag, { type: 'boolean', default: false, describe: s.describe });
    return b as unknown as Argv<InspectArgs>;
  },
  handler: async (argv: ArgumentsCamelCase<InspectArgs>) => {
    const model = loadModel(argv.model);
    // The same preflight as every other command: a file onnxruntime would refuse is refused here too.
    await checkModelForInspect(model, argv.model, (line) =>
      process.stderr.write(`note: ${escapeControl(line)}\n`),
    );
    const report = await inspectModel(model, argv.model, inputShapesFor(model, argv.inputShape, argv.model));
    const extras: { s: InspectSection; out: { json: unknown; text: string } }[] = [];
    for (const s of extraSections)
      if (argv[s.flag] === true) extras.push({ s, out: await s.collect(model, report) });
    for (const { s, out } of extras) report[s.key] = out.json;
    if (argv.json) {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return;
    }
    let text = renderInspectText(report, argv.layers);
    for (const { out } of extras) text += `\n\n${out.text}`;
    process.stdout.write(`${escapeControl(text, true)}\n`);
  },
};

function tensorInfo(v: Value): TensorInfo {
  const t = v.type;
  if (t?.kind !== 'tensor') return { name: v.name, elemType: t ? 'non-tensor' : 'unknown', shape: null };
  return {
    name: v.name,
    elemType: dataTypeName(t.elemType).toLowerCase(),
    shape: t.shape ? [...t.shape] : null,
  };
}

/** Gathers the report. Shapes are probed (at batch 1) to count MACs, so declared I/O is read first. */
export async function inspectModel(
  model: Model,
  file: string,
  inputShape?: number[] | Record<string, number[]>,
): Promise<InspectReport> {
  const inputs = dataInputs(model).map(tensorInfo);
  const outputs = model.graph.outputs.map(tensorInfo);
  const ops: Record<string, number> = {};
  let nodes = 0;
  for (const n of model.graph.allNodes()) {
    const op = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.${n.opType}` : n.opType;
    ops[op] = (ops[op] ?? 0) + 1;
    nodes++;
  }
  const sortedOps = Object.fromEntries(
    Object.entries(ops).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])),
  );
  const batchNorm = batchNormReport(model);
  const warn = (msg: string): boolean => process.stderr.write(`warning: ${escapeControl(msg)}\n`);
  const cost = await countCostProbed(model, { inputShape, warn });
  return {
    file,
    irVersion: model.irVersion,
    opsets: model.opsetImports.map((o) => ({ domain: o.domain || 'ai.onnx', version: o.version })),
    producer: { name: model.producerName ?? null, version: model.producerVersion ?? null },
    inputs,
    outputs,
    nodes,
    ops: sortedOps,
    inputShapes: cost.inputShapes,
    macs: cost.totalMacs,
    macsByOp: cost.macsByOp,
    params: {
      trainable: cost.totalParams,
      convLinear: cost.convLinearParams,
      bnAffine: cost.bnAffineParams,
      bnRunningStats: cost.totalBuffers,
    },
    batchNorm,
    layers: cost.perNode.map((l) => ({
      ...l,
      module: (l.weight && modulePathOfParameter(l.weight)) ?? modulePathOfScopedName(l.name) ?? l.name,
    })),
  };
}

export function renderInspectText(r: InspectReport, withLayers: boolean): string {
  const io = (list: TensorInfo[]): string =>
    list.map((t) => `  ${t.name}  ${t.elemType}  ${t.shape ? shapeToString(t.shape) : '?'}`).join('\n');
  const at = Object.entries(r.inputShapes)
    .map(([name, s]) => (Object.keys(r.inputShapes).length > 1 ? `${name} ` : '') + s.join('x'))
    .join(', ');
  const parts = [
    renderKeyValues([
      ['model', r.file],
      ['IR version', r.irVersion],
      ['opsets', r.opsets.map((o) => `${o.domain} ${o.version}`).join(', ')],
      ['producer', [r.producer.name, r.producer.version].filter(Boolean).join(' ') || '(none)'],
    ]),
    `inputs:\n${io(r.inputs)}`,
    `outputs:\n${io(r.outputs)}`,
    `ops (${formatCount(r.nodes)} nodes):\n${renderTable(['op', 'count'], Object.entries(r.ops)).replace(/^/gm, '  ')}`,
    renderKeyValues([
      ['params', `${formatCount(r.params.trainable)} (${formatShort(r.params.trainable)})`],
      ['  conv/linear', r.params.convLinear],
      ['  BN gamma+beta', r.params.bnAffine],
      ['BN running stats', `${formatCount(r.params.bnRunningStats)} (buffers, not params)`],
      ['MACs', `${formatCount(r.macs)} (${formatShort(r.macs)}) per image at ${at}`],
    ]),
  ];
  if (r.batchNorm.notice) parts.push(renderNote(r.batchNorm.notice));
  if (withLayers)
    parts.push(
      renderTable(
        [
          'module',
          'op',
          { header: 'out ch', align: 'right' },
          { header: 'MACs', align: 'right' },
          { header: 'params', align: 'right' },
        ],
        r.layers.map((l) => [l.module, l.opType, l.outChannels, l.macs, l.params]),
      ),
    );
  return parts.join('\n\n');
}
