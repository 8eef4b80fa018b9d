import { batches } from '../data/batches.js';
import type { Dataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import type { ModelSession } from '../runtime/session.js';

export interface ProxyScore {
  top1: number;
  /** Mean softmax cross-entropy. */
  loss: number;
  images: number;
}

/**
 * Top-1 and mean cross-entropy of a classifier on fixed samples: the cheap proxy the adaptive step ranks
 * candidates by. The loss breaks ties between candidates of equal top-1 on a small calibration split.
 */
export async function proxyScore(
  session: ModelSession,
  dataset: Dataset,
  indices: ArrayLike<number>,
  spec: PreprocessSpec,
  batchSize = 256,
): Promise<ProxyScore> {
  let correct = 0;
  let lossSum = 0;
  let n = 0;
  for await (const batch of batches(dataset, { spec, batchSize, indices })) {
    const logits = await session.run(batch.images, batch.shape);
    const classes = logits.length / batch.n;
    for (let i = 0; i < batch.n; i++) {
      const row = logits.subarray(i * classes, (i + 1) * classes);
      let best = 0;
      let max = -Infinity;
      for (let c = 0; c < classes; c++) if (row[c]! > max) [max, best] = [row[c]!, c];
      let sum = 0;
      for (let c = 0; c < classes; c++) sum += Math.exp(row[c]! - max);
      const label = batch.labels[i]!;
      lossSum += Math.log(sum) - (row[label]! - max);
      if (best === label) correct++;
    }
    n += batch.n;
  }
  return { top1: n ? correct / n : 0, loss: n ? lossSum / n : 0, images: n };
}

/** Candidates ranked best first: higher top-1, then lower loss. */
export function rankCandidates<T extends { score: ProxyScore }>(candidates: T[]): T[] {
  return [...candidates].sort((a, b) => b.score.top1 - a.score.top1 || a.score.loss - b.score.loss);
}
