import { parseJsonText } from '../data/error-text.js';
import { UserError } from '../errors.js';
import { noteInput, readRegularFile } from '../run-files.js';
import type { Criterion } from './criteria.js';
import { CRITERIA } from './criteria.js';
import type { GroupAnalysis } from './groups.js';

export const PLAN_FORMAT = 'adapruner-plan';
export const PLAN_VERSION = 1;

export interface PlanGroup {
  id: number;
  /** Channel classes before pruning. */
  channels: number;
  /** The first member, "value name" (axis 1) or "value name@axis": identifies the group on re-load. */
  anchor: string;
  /** Kept class indices, ascending. Class numbering is deterministic for a given model. */
  keep: number[];
  frozen?: string;
}

/** A pruning plan: plain JSON, so it can be saved, inspected, edited and re-applied (--plan-out / --plan-in). */
export interface Plan {
  format: typeof PLAN_FORMAT;
  version: typeof PLAN_VERSION;
  criterion: Criterion | 'custom';
  seed: number;
  budget?: {
    kind: 'flops' | 'params';
    ratio: number;
    uniform: boolean;
    roundTo: number;
    /** Groups of at least `channels` channels were rounded to multiples of `roundTo` instead. */
    wide?: { channels: number; roundTo: number };
    /** Every group kept at least this many channels (--min-channels, or prune's block floor). */
    minChannels?: number;
  };
  groups: PlanGroup[];
}

export function anchorOf(analysis: GroupAnalysis, id: number): string {
  const s = analysis.groups[id]!.spaces[0]!;
  return s.axis === 1 ? s.value.name : `${s.value.name}@${s.axis}`;
}

/** The JSON Schema of a plan file (draft 2020-12), for users who generate or edit plans with other tools. */
export const PLAN_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'adapruner pruning plan',
  type: 'object',
  required: ['format', 'version', 'criterion', 'seed', 'groups'],
  properties: {
    format: { const: PLAN_FORMAT },
    version: { const: PLAN_VERSION },
    criterion: { enum: [...CRITERIA, 'custom'] },
    seed: { type: 'integer' },
    budget: {
      type: 'object',
      required: ['kind', 'ratio', 'uniform', 'roundTo'],
      properties: {
        kind: { enum: ['flops', 'params'] },
        ratio: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
        uniform: { type: 'boolean' },
        roundTo: { type: 'integer', minimum: 1 },
        wide: {
          type: 'object',
          required: ['channels', 'roundTo'],
          properties: { channels: { type: 'integer', minimum: 1 }, roundTo: { type: 'integer', minimum: 1 } },
        },
        minChannels: { type: 'integer', minimum: 1 },
      },
    },
    groups: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'channels', 'anchor', 'keep'],
        properties: {
          id: { type: 'integer', minimum: 0 },
          channels: { type: 'integer', minimum: 1 },
          anchor: { type: 'string' },
          keep: { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1, uniqueItems: true },
          frozen: { type: 'string' },
        },
      },
    },
  },
} as const;

/**
 * Checks a parsed plan against the model's groups; every problem is a UserError naming the plan and the group.
 * Returns the keep masks per group.
 */
export function validatePlan(
  raw: unknown,
  analysis: GroupAnalysis,
  where = 'plan',
): { plan: Plan; keep: Uint8Array[] } {
  const fail = (msg: string): never => {
    throw new UserError(msg, where);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('not a JSON object');
  const p = raw as Record<string, unknown>;
  if (p.format !== PLAN_FORMAT) fail(`"format" must be "${PLAN_FORMAT}"`);
  if (p.version !== PLAN_VERSION)
    fail(`unsupported plan version ${JSON.stringify(p.version)} (this tool reads ${PLAN_VERSION})`);
  if (typeof p.criterion !== 'string' || ![...CRITERIA, 'custom'].includes(p.criterion))
    fail(`unknown criterion ${JSON.stringify(p.criterion)}`);
  if (!Number.isInteger(p.seed)) fail('"seed" must be an integer');
  if (!Array.isArray(p.groups)) fail('"groups" must be an array');
  const groups = p.groups as unknown[];
  if (groups.length !== analysis.groups.length)
    fail(
      `plan has ${groups.length} groups but the model has ${analysis.groups.length}: it was made for another model`,
    );
  const keep = groups.map((entry, i) => {
    const gp = entry as Record<string, unknown>;
    const grp = analysis.groups[i]!;
    const at = `group ${i}`;
    if (typeof gp !== 'object' || gp === null) fail(`${at}: not an object`);
    if (gp.id !== i)
      fail(`${at}: "id" is ${JSON.stringify(gp.id)}, expected ${i} (groups must be listed in order)`);
    if (gp.channels !== grp.size)
      fail(`${at}: plan says ${JSON.stringify(gp.channels)} channels, the model has ${grp.size}`);
    const anchor = anchorOf(analysis, i);
    if (gp.anchor !== anchor)
      fail(`${at}: anchor ${JSON.stringify(gp.anchor)} does not match the model's '${anchor}'`);
    if (!Array.isArray(gp.keep) || gp.keep.length === 0)
      fail(`${at}: "keep" must be a non-empty array of channel indices`);
    const mask = new Uint8Array(grp.size);
    let prev = -1;
    for (const c of gp.keep as unknown[]) {
      if (!Number.isInteger(c) || (c as number) < 0 || (c as number) >= grp.size)
        fail(`${at}: channel index ${JSON.stringify(c)} is out of range [0, ${grp.size})`);
      if ((c as number) <= prev) fail(`${at}: "keep" must be strictly ascending`);
      prev = c as number;
      mask[c as number] = 1;
    }
    if (grp.frozen.length && (gp.keep as unknown[]).length !== grp.size)
      fail(`${at} is frozen (${grp.frozen[0]}) and must keep all ${grp.size} channels`);
    return mask;
  });
  return { plan: raw as Plan, keep };
}

/** A plan file read and parsed, noted as an input; any failure is a one-line UserError naming it. */
export function readPlanFile(file: string): unknown {
  let text: string;
  try {
    text = readRegularFile(file, 256 << 20).toString('utf8');
    noteInput(file, 'the plan');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new UserError(`cannot read plan: ${err.code ?? err.message.split('\n')[0]}`, file);
  }
  // The position only: the parser's own message quotes the text, and the file may be any file.
  const parsed = parseJsonText(text);
  if ('error' in parsed) throw new UserError(`cannot read plan: ${parsed.error}`, file);
  return parsed.value;
}
