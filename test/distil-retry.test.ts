/**
 * Label-free distillation that diverges at the default rate is tried once more at a tenth of it; at the user's
 * own rate, or a second time, the best earlier stage is kept. Each divergence is one note.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Graph, Model } from '../src/ir/index.js';
import { distilWithRetry } from '../src/pipeline/distil-retry.js';
import { TrainingDivergedError } from '../src/train/distill.js';

const model = new Model(new Graph());
/** Diverges above `stable`, and records every rate it was run at. */
function runner(stable: number): { rates: number[]; run: (lr: number) => Promise<Model> } {
  const rates: number[] = [];
  return {
    rates,
    run: async (lr) => {
      rates.push(lr);
      if (lr > stable)
        throw new TrainingDivergedError(
          'distillation diverged at epoch 1, step 12 (loss NaN): lower the learning rate (--finetune-lr)',
        );
      return model;
    },
  };
}

describe('distilWithRetry', () => {
  it('a default rate that diverges is retried at a tenth, with one note naming both rates', async () => {
    const notes: string[] = [];
    const { rates, run } = runner(0.001);
    assert.equal(await distilWithRetry(0.003, true, run, (l) => notes.push(l)), model);
    assert.deepEqual(rates, [0.003, 0.0003]);
    assert.deepEqual(notes, [
      'distillation diverged at epoch 1, step 12 (loss NaN) at the default rate 0.003; distilling again at 0.0003',
    ]);
  });

  it("the user's rate is not second-guessed, and a second divergence keeps the earlier stage", async () => {
    for (const [retry, expected] of [
      [false, [0.003]],
      [true, [0.003, 0.0003]],
    ] as const) {
      const notes: string[] = [];
      const { rates, run } = runner(1e-6);
      assert.equal(await distilWithRetry(0.003, retry, run, (l) => notes.push(l)), undefined);
      assert.deepEqual(rates, expected);
      assert.match(notes.at(-1)!, /the best earlier stage is written$/);
    }
  });

  it('other errors are not swallowed', async () => {
    await assert.rejects(
      distilWithRetry(
        0.003,
        true,
        async () => Promise.reject(new Error('disk full')),
        () => {},
      ),
      /disk full/,
    );
  });
});
