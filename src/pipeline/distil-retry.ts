import type { Model } from '../ir/index.js';
import { TrainingDivergedError } from '../train/distill.js';

/**
 * Distils at `lr`; when that diverges and the rate was the default (`retry`), once more at a tenth of it
 * (yolov8n-scale detector, batch 1, the detect loss: NaN at step 12 at 0.003, R² -33% -> 77% at 0.0003). A
 * second divergence, or one at the user's own rate, gives undefined: the best earlier stage is kept. `note`
 * receives one line per divergence.
 */
export async function distilWithRetry(
  lr: number,
  retry: boolean,
  run: (lr: number) => Promise<Model>,
  note: (line: string) => void,
): Promise<Model | undefined> {
  try {
    return await run(lr);
  } catch (e) {
    if (!(e instanceof TrainingDivergedError)) throw e;
    if (!retry) {
      note(`${e.message}; the best earlier stage is written`);
      return undefined;
    }
    const what = e.message.replace(/: lower the learning rate.*$/, '');
    const lower = Number((lr / 10).toPrecision(12)); // 0.0003, not 0.00030000000000000003, in the note
    note(`${what} at the default rate ${lr}; distilling again at ${lower}`);
    return distilWithRetry(lower, false, run, note);
  }
}
