import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Model } from '../src/ir/index.js';
import { loadModel } from '../src/ir/load.js';
import { cleanupPipeline } from '../src/passes/index.js';
import { PassManager } from '../src/passes/pass-manager.js';
import { describeGroups, type GroupRow } from '../src/prune/index.js';
import { FIXTURE_MODELS, fixture, needsShared, runCli, sharedModel } from './helpers.js';

const cli = (...args: string[]) => runCli(args);

/** Parses the text section: the table rows and the `id: member, member` lines. */
function parseGroupsText(
  text: string,
): { id: number; channels: number; members: number; frozen: string; list: string[] }[] {
  const lines = text.split('\n');
  const head = lines.findIndex((l) => /^group\s+channels\s+members\s+frozen$/.test(l));
  assert.ok(head >= 0, 'groups table header');
  const rows: { id: number; channels: number; members: number; frozen: string; list: string[] }[] = [];
  for (const l of lines.slice(head + 2)) {
    const m = /^\s*(\d+)\s+([\d,]+)\s+([\d,]+)(?:\s{2}(.*))?$/.exec(l);
    if (!m) break;
    rows.push({
      id: Number(m[1]),
      channels: Number(m[2]!.replace(/,/g, '')),
      members: Number(m[3]!.replace(/,/g, '')),
      frozen: m[4] ?? '',
      list: [],
    });
  }
  const start = lines.indexOf('members:');
  assert.ok(start > head, 'members listing');
  for (const l of lines.slice(start + 1)) {
    const m = /^ {2}(\d+): (.*)$/.exec(l);
    if (m) rows[Number(m[1])]!.list = m[2]!.split(', ');
  }
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
  const rows = JSON.parse(json.stdout).groups as GroupRow[];
  assert.deepEqual(rows, JSON.parse(JSON.stringify(expected)));

  const text = await cli('inspect', file, '--groups');
  assert.equal(text.code, 0, text.stderr);
  const parsed = parseGroupsText(text.stdout);
  assert.equal(parsed.length, expected.length);
  parsed.forEach((r, i) => {
    const e = expected[i]!;
    assert.deepEqual(
      [r.id, r.channels, r.members, r.frozen, r.list],
      [e.id, e.channels, e.members.length, e.frozen ?? '', e.members],
    );
  });
  // Every group holding a graph output is frozen, and says so.
  for (const name of outputs) {
    const holder = parsed.find((r) => r.list.some((m) => m.replace(/(@\d+)?\[\d+\]$/, '') === name));
    assert.ok(holder, `a group holds output '${name}'`);
    assert.match(holder.frozen, new RegExp(`graph output '${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}'`));
  }
  assert.ok(
    parsed.some((r) => r.frozen === ''),
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
