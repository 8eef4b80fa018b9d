import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { Model } from '../src/ir/index.js';
import { loadModel } from '../src/ir/load.js';
import type { LabelledGroupRow } from '../src/cli/inspect.js';
import { cleanupPipeline } from '../src/passes/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import { describeGroups } from '../src/prune/index.js';
import {
  modulePathOfParameter,
  modulePathOfScopedName,
  summarizeReasons,
} from '../src/report/module-names.js';
import { FIXTURE_MODELS, fixture, needsShared, runCli, sharedModel, tmpDir } from './helpers.js';

const cli = (...args: string[]) => runCli(args);

interface TextRow {
  id: number;
  channels: number;
  members: number;
  module: string;
  frozen: string;
  list: string[];
}

/** Parses the text section: the table rows and the (wrapped) `id: member, member` lines. */
function parseGroupsText(text: string): TextRow[] {
  const lines = text.split('\n');
  const head = lines.findIndex((l) => /^group\s+channels\s+members\s+module\s+frozen$/.test(l));
  assert.ok(head >= 0, 'groups table header');
  const moduleAt = lines[head]!.indexOf('module');
  const frozenAt = lines[head]!.indexOf('frozen');
  const rows: TextRow[] = [];
  for (const l of lines.slice(head + 2)) {
    const m = /^\s*(\d+)\s+([\d,]+)\s+([\d,]+)\s/.exec(l);
    if (!m) break;
    rows.push({
      id: Number(m[1]),
      channels: Number(m[2]!.replace(/,/g, '')),
      members: Number(m[3]!.replace(/,/g, '')),
      module: l.slice(moduleAt, frozenAt).trim(),
      frozen: l.slice(frozenAt).trim(),
      list: [],
    });
  }
  const start = lines.findIndex((l) => l.startsWith('members'));
  assert.ok(start > head, 'members listing');
  let current: TextRow | undefined;
  let joined = '';
  const flush = (): void => {
    if (current) current.list = joined.split(', ');
  };
  for (const l of lines.slice(start + 1)) {
    const m = /^ {2}(\d+): (.*)$/.exec(l);
    if (m) {
      flush();
      current = rows[Number(m[1])]!;
      joined = m[2]!;
    } else if (current && /^ {4,}\S/.test(l)) joined += ` ${l.trim()}`;
  }
  flush();
  return rows;
}

/** The model as prune analyses it: after the standard cleanup. */
function cleaned(file: string): Model {
  const model = loadModel(file);
  cleanupPipeline(new PassManager(), model);
  return model;
}

async function checkModel(file: string): Promise<void> {
  const expected = await describeGroups(cleaned(file));
  const outputs = loadModel(file).graph.outputs.map((v) => v.name);

  const json = await cli('inspect', file, '--groups', '--json');
  assert.equal(json.code, 0, json.stderr);
  const rows = JSON.parse(json.stdout).groups as LabelledGroupRow[];
  // JSON: the analysis' rows whole (raw value names, every frozen reason), plus module paths.
  assert.deepEqual(
    rows.map(({ module: _m, memberModules: _mm, ...raw }) => raw),
    JSON.parse(JSON.stringify(expected)),
  );
  rows.forEach((r) => assert.equal(r.memberModules.length, r.members.length));

  const text = await cli('inspect', file, '--groups');
  assert.equal(text.code, 0, text.stderr);
  const parsed = parseGroupsText(text.stdout);
  assert.equal(parsed.length, expected.length);
  parsed.forEach((r, i) => {
    const e = rows[i]!;
    assert.deepEqual(
      [r.id, r.channels, r.members, r.module, r.frozen, r.list],
      [e.id, e.channels, e.members.length, e.module, summarizeReasons(e.frozen), e.memberModules],
    );
  });
  for (const l of text.stdout.split('\n')) assert.ok(l.length <= 160, `line of ${l.length} characters`);
  // Every group holding a graph output is frozen, and says so.
  for (const name of outputs) {
    const holder = rows.find((r) => r.members.some((m) => m.replace(/(@\d+)?\[\d+\]$/, '') === name));
    assert.ok(holder, `a group holds output '${name}'`);
    assert.match(
      holder.frozen ?? '',
      new RegExp(`graph output '${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}'`),
    );
  }
  assert.ok(
    rows.some((r) => r.frozen === undefined),
    'some group is prunable',
  );
}

describe('inspect --groups', () => {
  for (const name of FIXTURE_MODELS)
    it(`${name} (BN kept and folded)`, async () => {
      await checkModel(fixture(`${name}.onnx`));
      await checkModel(fixture(`${name}-bnfolded.onnx`));
    });

  it('structure-only torchvision ResNet-50 (weights absent: the analysis reads no weight data)', async () => {
    await checkModel(fixture('torchvision/resnet50.onnx'));
  });

  it(
    'shared ResNet-56: one residual-stream group of 64 channels across the three stages',
    needsShared('models/resnet56-cifar10.onnx'),
    async () => {
      const file = sharedModel('resnet56-cifar10.onnx');
      await checkModel(file);
      const rows = await describeGroups(loadModel(file));
      const stream = rows.filter(
        (r) => r.members.some((m) => m.includes('/layer3/')) && r.members.some((m) => m.includes('/layer1/')),
      );
      assert.equal(stream.length, 1);
      assert.equal(stream[0]!.channels, 64);
    },
  );
});

describe('module paths in reports', () => {
  it('reads the module path out of torch scoped names and state_dict keys', () => {
    assert.equal(modulePathOfScopedName('/layer1/layer1.0/conv1/Conv_output_0'), 'layer1.0.conv1');
    assert.equal(
      modulePathOfScopedName('/features/features.1/conv/conv.0/conv.0.0/Conv'),
      'features.1.conv.0.0',
    );
    assert.equal(modulePathOfScopedName('/GlobalAveragePool_output_0'), undefined);
    assert.equal(modulePathOfScopedName('onnx::Conv_12'), undefined);
    assert.equal(modulePathOfParameter('layer1.0.downsample.1.running_var'), 'layer1.0.downsample.1');
    assert.equal(modulePathOfParameter('onnx::Conv_12'), undefined);
    assert.equal(
      summarizeReasons(
        "ReduceMean '/features/features.0/features.0.1/ReduceMean' reduces over channels; graph output 'logits'",
      ),
      "ReduceMean 'features.0.1' reduces over channels (+1 more)",
    );
    assert.equal(summarizeReasons('x'.repeat(100)).length, 72);
  });

  it('labels a folded export by scope and a BN-kept one by parameter name, the same', async () => {
    for (const file of ['resnet_b.onnx', 'resnet_b-bnfolded.onnx']) {
      const r = await cli('inspect', fixture(file), '--groups', '--json');
      assert.equal(r.code, 0, r.stderr);
      const rows = JSON.parse(r.stdout).groups as LabelledGroupRow[];
      assert.deepEqual(
        rows.map((g) => g.module),
        [
          'input',
          'conv1',
          'layer1.0.conv1',
          'layer1.0.conv2',
          'layer1.0.conv3',
          'layer1.1.conv1',
          'layer1.1.conv2',
          'layer2.0.conv1',
          'layer2.0.conv2',
          'layer2.0.conv3',
          'layer2.1.conv1',
          'layer2.1.conv2',
          'fc',
        ],
        file,
      );
    }
  });

  it('prune: the text table and the report label groups by module path; report JSON keeps the anchor', async () => {
    const dir = tmpDir();
    try {
      const out = path.join(dir, 'slim.onnx');
      const r = await cli('prune', fixture('resnet_b.onnx'), '--flops', '0.5', '-o', out, '--verbose');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^\s+2\s+layer1\.0\.conv1\s/m);
      assert.match(r.stdout, /^\s+12\s+fc\s/m);
      const report = JSON.parse(fs.readFileSync(`${out}.report.json`, 'utf8')) as {
        groups: { label: string; anchor: string }[];
      };
      assert.deepEqual(report.groups[2], {
        ...report.groups[2],
        label: 'layer1.0.conv1',
        anchor: '/layer1/layer1.0/conv1/Conv_output_0',
      });
      assert.equal(report.groups.at(-1)!.label, 'fc');
      assert.match(fs.readFileSync(`${out}.report.md`, 'utf8'), /\| g2 \| `layer1\.0\.conv1` \|/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
