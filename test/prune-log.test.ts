/**
 * prune's log lines: in a terminal a status line per stage; in a log (CI, a pipe) nothing for short stages and
 * a note every so often for a long one, so a quarter-hour stage is never silent.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PruneLog } from '../src/cli/prune-summary.js';

function capture(): { stream: NodeJS.WriteStream; text: () => string } {
  const stream = new PassThrough() as unknown as NodeJS.WriteStream;
  let text = '';
  (stream as unknown as PassThrough).on('data', (chunk: Buffer) => (text += chunk.toString()));
  return { stream, text: () => text };
}

describe('prune log in a non-terminal stream', () => {
  it('a run longer than the note interval is noted with its stage and times; close stops it', async () => {
    const { stream, text } = capture();
    const log = new PruneLog(false, stream, 120);
    log.log('recalibrate...');
    await sleep(40);
    log.log('candidate l1...');
    await sleep(400);
    log.close();
    const lines = text().trim().split('\n');
    assert.ok(lines.length >= 1 && lines.length <= 4, text());
    assert.ok(
      lines.every((l) => /^adapruner: candidate l1\.\.\. \(\d+ s into it, \d+ s in all\)$/.test(l)),
      text(),
    );
    const before = text();
    await sleep(300);
    assert.equal(text(), before, 'no note after close');
  });

  it('a stage that counts its passes is noted with the pass and an ETA from the pace so far', async () => {
    const { stream, text } = capture();
    const log = new PruneLog(false, stream, 100);
    log.log('compensate...');
    log.log('  compensation pass 1/4: Conv_1');
    await sleep(150);
    log.log('  compensation pass 2/4: Conv_2, Conv_3');
    await sleep(150);
    const passes = text().trim().split('\n');
    log.log('evaluate...');
    await sleep(150);
    log.close();
    assert.match(
      passes[0]!,
      /^adapruner: compensate\.\.\. \(pass 1\/4; \d+ s into it, \d+ s in all\)$/,
      text(),
    );
    // The ETA is what one pass took (about 0.15 s) times the three left, in whole seconds.
    assert.match(
      passes.at(-1)!,
      /^adapruner: compensate\.\.\. \(pass 2\/4, ETA \d+ s; \d+ s into it/,
      text(),
    );
    // The next stage starts without a count.
    assert.match(text().trim().split('\n').at(-1)!, /^adapruner: evaluate\.\.\. \(\d+ s into it/, text());
  });
});
