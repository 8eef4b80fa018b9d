// Re-selects a saved plan's channels with another inheritance criterion, keeping every group's width: the
// plan for "the same widths, criterion X", so that fine-tuning can be compared across criteria with the widths
// held fixed (`prune --criterion X` would re-run the width search and may pick other widths).
// Usage: npx tsx bench/replan-criterion.ts MODEL PLAN_IN CRITERION OUT_PLAN [SEED]
// Data-free criteria only (l1, l2, bn, fpgm, random, exemplar): taylor needs calibration batches. Groups that
// span Concat/Split branches are not re-balanced per branch; `prune --plan-in` checks the result as usual.
import { UserError } from '../src/errors.js';
import { loadModel } from '../src/ir/index.js';
import { analyzeForPruning, parseCriterion, readPlanFile, validatePlan } from '../src/prune/index.js';
import { classPriority } from '../src/prune/criteria.js';
import { checkOutput, RunOutputs } from '../src/run-files.js';

async function main(): Promise<void> {
  const [modelFile, planFile, criterionName, outFile, seedText = '0'] = process.argv.slice(2);
  if (!modelFile || !planFile || !criterionName || !outFile)
    throw new UserError('usage: replan-criterion.ts MODEL PLAN_IN CRITERION OUT_PLAN [SEED]');
  const criterion = parseCriterion(criterionName);
  if (criterion === 'taylor')
    throw new UserError('taylor needs calibration data; use prune --criterion taylor');
  const seed = Number(seedText);
  if (!Number.isInteger(seed)) throw new UserError(`SEED must be an integer, got '${seedText}'`);
  const model = loadModel(modelFile);
  const raw = readPlanFile(planFile);
  checkOutput(outFile, 'plan');
  const analysis = await analyzeForPruning(model, { warn: (m) => console.error(m) });
  const { plan } = validatePlan(raw, analysis.channels, planFile);
  const groups = plan.groups.map((g, i) => {
    const group = analysis.channels.groups[i]!;
    if (group.frozen.length || g.keep.length === g.channels) return g;
    const order = classPriority(group, criterion, seed, (m) => console.error(m), analysis.filters[i]);
    return { ...g, keep: order.slice(0, g.keep.length).sort((a, b) => a - b) };
  });
  const changed = groups.filter((g, i) => g.keep.join() !== plan.groups[i]!.keep.join()).length;
  const outputs = new RunOutputs();
  outputs.write(outFile, `${JSON.stringify({ ...plan, criterion, seed, groups }, null, 1)}\n`, 'plan');
  outputs.commit();
  console.error(`${outFile}: ${criterion}, ${changed} of ${groups.length} groups keep other channels`);
}

main().catch((e: unknown) => {
  console.error(e instanceof UserError ? `replan-criterion: ${e.message}` : e);
  process.exit(e instanceof UserError ? 2 : 1);
});
