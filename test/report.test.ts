import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import {
  renderReportMarkdown,
  renderReportSvg,
  writeReports,
  type PruneReport,
} from '../src/report/index.js';
import { tmpDir } from './helpers.js';

function sampleReport(groups = 12): PruneReport {
  return {
    tool: { name: 'adapruner', version: '0.0.0-test' },
    input: 'in.onnx',
    output: 'out.onnx',
    budget: { kind: 'flops', target: 0.5, achieved: 0.498 },
    before: { macs: 125_485_696, params: 853_018, latencyMs: 4.2 },
    after: { macs: 62_500_000, params: 420_000, latencyMs: 2.5 },
    accuracy: [
      { stage: 'original', top1: 0.832, images: 1000 },
      { stage: 'pruned', top1: 0.31, images: 1000 },
      { stage: 'recalibrated', top1: 0.6, images: 1000 },
      { stage: 'finetuned', top1: 0.8, images: 1000 },
    ],
    criteria: [
      { criterion: 'l1', top1: 0.6, loss: 1.2, chosen: true },
      { criterion: 'bn', top1: 0.55, loss: 1.4, chosen: false },
    ],
    chosenCriterion: 'l1',
    groups: Array.from({ length: groups }, (_, i) => ({
      id: `g${i}`,
      label: `layer${i}.conv1 <&>`,
      before: 16 * (1 + (i % 3)),
      after: 8 + (i % 5),
      score: 0.1 * i,
      ...(i === 3 ? { frozen: 'reaches the graph output' } : {}),
    })),
    stages: [{ name: 'search', seconds: 0.4 }],
    notes: ['a note'],
  };
}

const AFTER_BLUE = [0x2f, 0x6d, 0xb5];

function chromium(): string | undefined {
  for (const c of ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'])
    if (fs.existsSync(c)) return c;
  return undefined;
}

/** Renders a file in headless Chromium and counts pixels of the "after" bar colour. */
async function renderedBluePixels(file: string, dir: string): Promise<number> {
  const shot = path.join(dir, `shot-${path.basename(file)}.png`);
  execFileSync(
    chromium()!,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--user-data-dir=${path.join(dir, 'profile')}`,
      '--window-size=1200,900',
      `--screenshot=${shot}`,
      `file://${file}`,
    ],
    { stdio: 'ignore', timeout: 60_000 },
  );
  const { data, info } = await sharp(shot).raw().toBuffer({ resolveWithObject: true });
  let n = 0;
  for (let i = 0; i < data.length; i += info.channels) {
    if (
      Math.abs(data[i]! - AFTER_BLUE[0]!) < 6 &&
      Math.abs(data[i + 1]! - AFTER_BLUE[1]!) < 6 &&
      Math.abs(data[i + 2]! - AFTER_BLUE[2]!) < 6
    )
      n++;
  }
  return n;
}

test('report SVG is well-formed and escapes labels', () => {
  const svg = renderReportSvg(sampleReport());
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.ok(svg.includes('layer0.conv1 &lt;&amp;&gt;'));
  assert.ok(!svg.includes('<&>'));
  assert.equal((svg.match(/class="after"/g) ?? []).length, 12);
  assert.equal((svg.match(/class="accuracy"/g) ?? []).length, 4);
});

test('markdown report carries totals, criteria and every group', () => {
  const md = renderReportMarkdown(sampleReport(), 'x.svg');
  assert.ok(md.includes('| MACs | 125.49 M | 62.50 M | 49.81% |'));
  assert.ok(md.includes('| l1 | — | 60.00% | 1.2000 | yes |'));
  for (let i = 0; i < 12; i++) assert.ok(md.includes(`| g${i} |`));
});

test('the budget line names a re-applied plan and the budget it was made for, or none', () => {
  const plan = {
    ...sampleReport(),
    budget: { kind: 'flops' as const, target: 0.5, achieved: 0.4994, plan: 'a_b.json' },
  };
  assert.ok(
    renderReportMarkdown(plan).includes(
      'Budget: plan a\\_b.json (made for flops 50.00%), flops achieved 49.94%. Criterion',
    ),
  );
  const bare = { ...plan, budget: { kind: 'params' as const, achieved: 0.4, plan: 'p.json' } };
  assert.ok(renderReportMarkdown(bare).includes('Budget: plan p.json, params achieved 40.00%.'));
  assert.ok(renderReportSvg(bare).includes('budget: plan p.json, params achieved 40.00%'));
  assert.ok(renderReportMarkdown(sampleReport()).includes('Budget: flops 50.00%, achieved 49.80%.'));
});

test('writeReports writes the three files next to the model', () => {
  const dir = tmpDir();
  const files = writeReports(sampleReport(), path.join(dir, 'm.onnx'));
  assert.deepEqual(
    files.map((f) => path.basename(f)),
    ['m.onnx.report.json', 'm.onnx.report.svg', 'm.onnx.report.md'],
  );
  assert.deepEqual(JSON.parse(fs.readFileSync(files[0]!, 'utf8')), sampleReport());
  assert.deepEqual(fs.readdirSync(dir).sort(), [
    'm.onnx.report.json',
    'm.onnx.report.md',
    'm.onnx.report.svg',
  ]);
});

test(
  'the SVG draws in headless Chromium',
  { skip: chromium() ? false : 'Chromium is not installed (apt-get install chromium)' },
  async () => {
    const dir = tmpDir();
    const good = path.join(dir, 'good.svg');
    fs.writeFileSync(good, renderReportSvg(sampleReport(20)));
    const broken = path.join(dir, 'broken.svg');
    // An unescaped '<' early in the document, as a writer that forgot to escape a label would produce.
    fs.writeFileSync(broken, renderReportSvg(sampleReport(20)).replace('adapruner: ', 'adapruner: <'));
    const drawn = await renderedBluePixels(good, dir);
    // 19 unfrozen "after" bars of at least 8 channels plus 4 accuracy bars: thousands of pixels.
    assert.ok(drawn > 2000, `only ${drawn} bar pixels drawn (${dir})`);
    // Chromium shows its XML error page and draws nothing after the error: the check above catches a broken writer.
    const brokenDrawn = await renderedBluePixels(broken, dir);
    assert.ok(brokenDrawn < drawn / 10, `malformed SVG still drew ${brokenDrawn} bar pixels`);
  },
);
