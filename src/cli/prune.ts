import fs from 'node:fs';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { UserError } from '../errors.js';
import { loadModel, saveModel } from '../ir/index.js';
import { PassManager } from '../passes/pass-manager.js';
import { CRITERIA, parseCriterion, pruneModel, type PruneReport } from '../prune/index.js';
import { formatCount, renderKeyValues, renderTable } from '../report/table.js';

interface PruneArgs {
  model: string;
  output?: string;
  flops?: number;
  params?: number;
  criterion: string;
  uniform: boolean;
  roundTo: number;
  minChannels: number;
  minFraction: number;
  seed: number;
  planOut?: string;
  planIn?: string;
  dryRun: boolean;
  validate: boolean;
  json: boolean;
  timings: boolean;
  debug: boolean;
}

export const pruneCommand: CommandModule<object, PruneArgs> = {
  command: 'prune <model>',
  describe: 'Prune channels to a MAC or parameter budget (data-free), or re-apply a saved plan',
  builder: (y) =>
    y
      .positional('model', { type: 'string', demandOption: true, describe: 'ONNX file' })
      .option('output', { alias: 'o', type: 'string', requiresArg: true, describe: 'Where to write the pruned model' })
      .option('flops', { type: 'number', requiresArg: true, describe: 'Fraction of the original MACs to keep, e.g. 0.5' })
      .option('params', { type: 'number', requiresArg: true, describe: 'Fraction of the original parameters to keep' })
      .option('criterion', { type: 'string', default: 'l1', choices: [...CRITERIA], describe: 'Which channels a group keeps' })
      .option('uniform', { type: 'boolean', default: false, describe: 'Same keep ratio for every group (the baseline)' })
      .option('round-to', { type: 'number', default: 1, describe: 'Channel counts in multiples of N' })
      .option('min-channels', { type: 'number', default: 1, describe: 'Fewest channels any group keeps' })
      .option('min-fraction', { type: 'number', default: 0.1, describe: 'Smallest fraction of its channels any group keeps' })
      .option('seed', { type: 'number', default: 0, describe: 'Seed for --criterion random' })
      .option('plan-out', { type: 'string', requiresArg: true, describe: 'Write the plan (JSON) here' })
      .option('plan-in', { type: 'string', requiresArg: true, describe: 'Apply this saved plan instead of searching' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'Plan and report only; write no model' })
      .option('validate', { type: 'boolean', default: true, describe: 'Verify and run the result in onnxruntime before writing (--no-validate to skip)' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the report as JSON' }) as unknown as Argv<PruneArgs>,
  handler: async (argv: ArgumentsCamelCase<PruneArgs>) => {
    if (!argv.dryRun && !argv.output) throw new UserError('name the output file with -o OUT (or use --dry-run)');
    const pm = new PassManager({ timings: argv.timings, debug: argv.debug });
    const model = pm.time('load', () => loadModel(argv.model));
    let plan: unknown;
    if (argv.planIn) {
      try {
        plan = JSON.parse(fs.readFileSync(argv.planIn, 'utf8'));
      } catch (e) {
        throw new UserError(`cannot read plan: ${(e as Error).message}`, argv.planIn);
      }
    }
    const warnings: string[] = [];
    const result = await pruneModel(model, {
      flops: argv.flops,
      params: argv.params,
      criterion: parseCriterion(argv.criterion),
      uniform: argv.uniform,
      roundTo: argv.roundTo,
      minChannels: argv.minChannels,
      minFraction: argv.minFraction,
      seed: argv.seed,
      plan,
      planSource: argv.planIn,
      validate: argv.validate && !argv.dryRun,
      passManager: pm,
      warn: (m) => {
        warnings.push(m);
        if (!argv.json) console.error(`adapruner: warning: ${m}`);
      },
    });
    if (argv.planOut) fs.writeFileSync(argv.planOut, `${JSON.stringify(result.plan, null, 1)}\n`);
    if (!argv.dryRun) pm.time('save', () => saveModel(model, argv.output!));
    if (argv.json) console.log(JSON.stringify({ ...result.report, timings: pm.timings }, null, 1));
    else console.log(renderReport(result.report));
  },
};

export function renderReport(r: PruneReport): string {
  const table = renderTable(
    ['group', 'anchor', { header: 'members', align: 'right' }, { header: 'before', align: 'right' }, { header: 'after', align: 'right' }, { header: 'importance', align: 'right' }, 'frozen'],
    r.groups.map((g) => [g.id, g.anchor, g.members, g.before, g.after, g.importance.toFixed(3), g.frozen ?? '']),
  );
  const pct = (a: number, b: number): string => `${((100 * a) / b).toFixed(2)}%`;
  const kv: [string, string][] = [
    ['criterion', r.criterion],
    ['importance', r.importanceSource === 'bn' ? 'mean |BN gamma|' : 'filter norm (no BN)'],
    ['MACs', `${formatCount(r.original.macs)} -> ${formatCount(r.pruned.macs)} (${pct(r.pruned.macs, r.original.macs)})`],
    ['params', `${formatCount(r.original.params)} -> ${formatCount(r.pruned.params)} (${pct(r.pruned.params, r.original.params)})`],
  ];
  if (r.search)
    kv.push(['search', `${r.search.steps} bisection steps, ${r.search.msPerStep.toFixed(3)} ms/step, ${r.search.fillSteps} fill steps`]);
  return `${table}\n\n${renderKeyValues(kv)}`;
}
