import { escapeControl } from '../escape.js';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { batchNormReport, type BatchNormReport } from '../analysis/bn-report.js';
import { countCost, dataInputs, type CostReport } from '../analysis/cost.js';
import { UserError } from '../errors.js';
import { dataTypeName } from '../ir/data-type.js';
import type { Value } from '../ir/graph.js';
import { loadModel } from '../ir/load.js';
import { checkModel } from '../runtime/preflight.js';
import type { Model } from '../ir/model.js';
import { shapeToString, type Dim } from '../ir/types.js';
import { describeGroups, type GroupRow } from '../prune/index.js';
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
  layers: CostReport['perNode'];
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
    const rows = await describeGroups(model, report.inputShapes, (msg) =>
      process.stderr.write(`warning: ${escapeControl(msg)}\n`),
    );
    return { json: rows, text: renderGroups(rows) };
  },
};

const extraSections: InspectSection[] = [groupsSection];

/** A table of groups, then each group's members (`value[channels]`, `@axis` when not axis 1). */
export function renderGroups(rows: readonly GroupRow[]): string {
  const frozen = rows.filter((r) => r.frozen !== undefined).length;
  const table = renderTable(
    ['group', { header: 'channels', align: 'right' }, { header: 'members', align: 'right' }, 'frozen'],
    rows.map((r) => [r.id, r.channels, r.members.length, r.frozen ?? '']),
  );
  const members = rows.map((r) => `  ${r.id}: ${r.members.join(', ')}`).join('\n');
  return `channel groups (${rows.length}: ${rows.length - frozen} prunable, ${frozen} frozen):\n${table}\n\nmembers:\n${members}`;
}

export const inspectCommand: CommandModule<object, InspectArgs> = {
  command: 'inspect <model>',
  describe: 'Show a model: inputs/outputs, opsets, op histogram, params and MACs per image, per-layer costs',
  builder: (y) => {
    let b = y
      .positional('model', { type: 'string', demandOption: true, describe: 'ONNX file' })
      .option('json', { type: 'boolean', default: false, describe: 'Print one JSON object instead of text' })
      .option('input-shape', {
        type: 'string',
        requiresArg: true,
        describe:
          'Input shape to count MACs at, e.g. 1x3x224x224 (or NAME=1x3x224x224 per input; batch counts as 1)',
      })
      .option('layers', { type: 'boolean', default: false, describe: 'Print the per-layer table' });
    for (const s of extraSections)
      b = b.option(s.flag, { type: 'boolean', default: false, describe: s.describe });
    return b as unknown as Argv<InspectArgs>;
  },
  handler: async (argv: ArgumentsCamelCase<InspectArgs>) => {
    const model = loadModel(argv.model);
    checkModel(model, argv.model, { weights: false });
    const report = inspectModel(model, argv.model, parseInputShapes(argv.inputShape));
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

/** Parses `--input-shape` values: `1x3x224x224` (the one data input) or `NAME=1x3x224x224`. */
export function parseInputShapes(
  option: string | string[] | undefined,
): number[] | Record<string, number[]> | undefined {
  if (option === undefined) return undefined;
  const values = Array.isArray(option) ? option : [option];
  const parsed = values.map((text) => {
    const m = /^(?:(.+)=)?(\d+(?:x\d+)*)$/.exec(text.trim());
    const dims = m?.[2]?.split('x').map(Number);
    if (!m || !dims || dims.some((d) => d <= 0 || !Number.isSafeInteger(d)))
      throw new UserError(`--input-shape '${text}' is not a shape like 1x3x224x224 (or NAME=1x3x224x224)`);
    return { name: m[1], dims };
  });
  if (parsed.length === 1 && parsed[0]!.name === undefined) return parsed[0]!.dims;
  const byName: Record<string, number[]> = {};
  for (const p of parsed) {
    if (p.name === undefined)
      throw new UserError('with several --input-shape values, name each input: NAME=1x3x224x224');
    byName[p.name] = p.dims;
  }
  return byName;
}

function tensorInfo(v: Value): TensorInfo {
  const t = v.type;
  if (t?.kind !== 'tensor') return { name: v.name, elemType: t ? 'non-tensor' : 'unknown', shape: null };
  return {
    name: v.name,
    elemType: dataTypeName(t.elemType).toLowerCase(),
    shape: t.shape ? [...t.shape] : null,
  };
}

/** Gathers the report. Shape inference runs (at batch 1) to count MACs, so declared I/O is read first. */
export function inspectModel(
  model: Model,
  file: string,
  inputShape?: number[] | Record<string, number[]>,
): InspectReport {
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
  const cost = countCost(model, { inputShape });
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
    layers: cost.perNode,
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
  if (r.batchNorm.notice) parts.push(`note: ${r.batchNorm.notice}`);
  if (withLayers)
    parts.push(
      renderTable(
        [
          'name',
          'op',
          { header: 'out ch', align: 'right' },
          { header: 'MACs', align: 'right' },
          { header: 'params', align: 'right' },
        ],
        r.layers.map((l) => [l.name, l.opType, l.outChannels, l.macs, l.params]),
      ),
    );
  return parts.join('\n\n');
}
