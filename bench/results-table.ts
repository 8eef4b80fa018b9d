/**
 * Renders the tables of docs/history.md ("The AdaPruner experiment") from the JSON that
 * bench/paper-experiment.sh and bench/criteria-experiment.sh wrote, so no figure is copied by hand.
 * Usage: tsx bench/results-table.ts PAPER_DIR CRITERIA_DIR
 */
import fs from 'node:fs';
import path from 'node:path';

interface Stage {
  stage: string;
  top1: number;
}
interface PruneJson {
  importanceSource: string;
  pipeline: {
    before: { macs: number; params: number };
    after: { macs: number; params: number };
    accuracy: Stage[];
    stages: { name: string; seconds: number }[];
    chosenCriterion: string;
    criteria: { criterion: string; top1: number; loss: number; chosen: boolean }[];
  };
}
interface FinetuneJson {
  history: { epoch: number; valAccuracy?: number; seconds: number; imagesPerSecond: number }[];
}

const [paperDir, criteriaDir] = process.argv.slice(2);
if (!paperDir || !criteriaDir) {
  console.error('usage: tsx bench/results-table.ts PAPER_DIR CRITERIA_DIR');
  process.exit(2);
}
const read = <T>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf8')) as T;
const pct = (x: number | undefined): string => (x === undefined ? '—' : `${(100 * x).toFixed(2)}%`);
const top1 = (j: PruneJson, stage: string): number | undefined =>
  j.pipeline.accuracy.find((a) => a.stage === stage)?.top1;
const seconds = (j: PruneJson, match: (name: string) => boolean): number =>
  j.pipeline.stages.filter((s) => match(s.name)).reduce((a, s) => a + s.seconds, 0);
const row = (cells: (string | number)[]): string => `| ${cells.join(' | ')} |`;

const out: string[] = [];
out.push('### (a)–(d): 50% MACs, fine-tuned the same way', '');
out.push(
  row([
    'arm',
    'MACs kept',
    'params kept',
    'top-1 pruned',
    'top-1 recalibrated',
    'top-1 fine-tuned',
    'select (s)',
    'fine-tune (s)',
    'evaluations (s)',
  ]),
);
out.push(row(Array(9).fill('---')));
const arms: [string, string][] = [
  ['(a) uniform widths + l1', 'uniform-l1'],
  ['(b) adaptive widths + l1', 'adaptive-l1'],
  ['(c) adaptive widths + auto', 'adaptive-auto'],
];
for (const [label, name] of arms) {
  const file = path.join(paperDir, `${name}.json`);
  if (!fs.existsSync(file) || fs.statSync(file).size === 0) continue; // arm not run (yet)
  const j = read<PruneJson>(file);
  const p = j.pipeline;
  out.push(
    row([
      label + (name === 'adaptive-auto' ? ` (chose ${p.chosenCriterion})` : ''),
      pct(p.after.macs / p.before.macs),
      pct(p.after.params / p.before.params),
      pct(top1(j, 'pruned')),
      pct(top1(j, 'recalibrated')),
      pct(top1(j, 'finetuned')),
      seconds(j, (n) => n.startsWith('candidate') || n === 'cleanup').toFixed(0),
      seconds(j, (n) => n === 'fine-tune').toFixed(0),
      seconds(j, (n) => n.startsWith('evaluate')).toFixed(0),
    ]),
  );
}
const unprunedFile = path.join(paperDir, 'unpruned-finetuned.json');
if (fs.existsSync(unprunedFile) && fs.statSync(unprunedFile).size > 0) {
  const u = read<FinetuneJson>(unprunedFile);
  const last = u.history[u.history.length - 1]!;
  const ft = u.history.reduce((a, h) => a + h.seconds, 0);
  out.push(
    row([
      '(d) unpruned, fine-tuned',
      '100%',
      '100%',
      '—',
      '—',
      pct(last.valAccuracy),
      '—',
      ft.toFixed(0),
      '—',
    ]),
  );
}
out.push('');

const auto = path.join(paperDir, 'adaptive-auto.json');
if (fs.existsSync(auto) && fs.statSync(auto).size > 0) {
  const j = read<PruneJson>(auto);
  out.push('Proxy scores of (c) on the 1,000 held-out training images (after BN recalibration):', '');
  out.push(row(['criterion', 'proxy top-1', 'proxy loss', 'chosen']));
  out.push(row(['---', '---', '---', '---']));
  for (const c of j.pipeline.criteria)
    out.push(row([c.criterion, pct(c.top1), c.loss.toFixed(4), c.chosen ? 'yes' : '']));
  out.push('');
}

out.push('### Each criterion at 50% MACs, BN recalibrated, no fine-tuning (10,000 test images)', '');
out.push(
  row([
    'model / widths',
    'criterion',
    'MACs kept',
    'params kept',
    'top-1 pruned',
    'top-1 recalibrated',
    'importance',
  ]),
);
out.push(row(Array(7).fill('---')));
const criteriaFiles = fs
  .readdirSync(criteriaDir)
  .filter((f) => f.endsWith('.json') && !f.includes('.report.'))
  .sort();
for (const f of criteriaFiles) {
  const j = read<PruneJson>(path.join(criteriaDir, f));
  const [kind, criterion] = f.replace('.json', '').split('-') as [string, string];
  const label = kind === 'bnfolded' ? 'ResNet-56 BN-folded, adaptive' : `ResNet-56, ${kind}`;
  const p = j.pipeline;
  out.push(
    row([
      label,
      criterion,
      pct(p.after.macs / p.before.macs),
      pct(p.after.params / p.before.params),
      pct(top1(j, 'pruned')),
      pct(top1(j, 'recalibrated')),
      j.importanceSource,
    ]),
  );
}
console.log(out.join('\n'));
