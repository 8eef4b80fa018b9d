import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { readCheckpoint, writeCheckpoint } from '../src/train/checkpoint.js';
import { learningRate, type ScheduleKind } from '../src/train/schedule.js';
import { tmpDir } from './helpers.js';

test('learning-rate schedules: linear warm-up, then cosine or linear to 0, step decay halfway, or constant', () => {
  const lr = (step: number, kind: ScheduleKind): number =>
    learningRate(0.1, step, 110, { kind, warmupSteps: 10 });
  assert.ok(Math.abs(lr(0, 'cosine') - 0.01) < 1e-12);
  assert.ok(Math.abs(lr(9, 'cosine') - 0.1) < 1e-12);
  assert.ok(Math.abs(lr(10, 'cosine') - 0.1) < 1e-12);
  assert.ok(Math.abs(lr(60, 'cosine') - 0.05) < 1e-12);
  assert.ok(lr(109, 'cosine') < 1e-4);
  assert.equal(lr(10, 'linear'), 0.1);
  assert.ok(Math.abs(lr(35, 'linear') - 0.075) < 1e-12);
  assert.ok(Math.abs(lr(109, 'linear') - 0.001) < 1e-12);
  assert.equal(lr(59, 'step'), 0.1);
  assert.ok(Math.abs(lr(60, 'step') - 0.01) < 1e-12);
  assert.equal(lr(100, 'constant'), 0.1);
});

test('a checkpoint round-trips exactly and is replaced atomically', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'a.ckpt');
  const tensors = new Map([
    ['w', Float32Array.from([1.5, -2, 3e-8])],
    ['b', new Float32Array(5).fill(0.25)],
  ]);
  const state = {
    epoch: 2,
    step: 40,
    fingerprint: 'abc',
    modelHash: 'def',
    history: [],
    best: { epoch: 1, accuracy: 0.5 },
    tensors,
  };
  writeCheckpoint(file, state);
  writeCheckpoint(file, { ...state, epoch: 3 });
  const back = readCheckpoint(file);
  assert.equal(back.epoch, 3);
  assert.deepEqual(back.best, state.best);
  assert.equal(back.modelHash, 'def');
  assert.deepEqual([...back.tensors.keys()], ['w', 'b']);
  assert.deepEqual(back.tensors.get('w'), tensors.get('w'));
  assert.deepEqual(fs.readdirSync(dir), ['a.ckpt'], 'no temporary file left behind');
  fs.writeFileSync(file, fs.readFileSync(file).subarray(0, 60));
  assert.throws(() => readCheckpoint(file), /checkpoint is truncated|not an adapruner checkpoint/);
});
