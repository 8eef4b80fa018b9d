// Times the dY width-shift forms written by dy-shift.py (docs/finetune.md, sixth round): the kinds named on the
// command line alternate in one process, 2 intra-op threads, and each Conv form is checked against the shifts
// computed directly. Usage: node bench/micro/dy-shift.mjs [DIR] [A B C D]
import * as ort from 'onnxruntime-node';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const dir = args.length && existsSync(args[0]) ? args.shift() : join(import.meta.dirname, 'out');
const kinds = args.length ? args : ['A', 'B', 'C', 'D'];
const ROUNDS = 120;
const WARMUP = 5;

function maxShiftError(out, x, c, hw) {
  const per = out.dims[1] / c; // 1: the shift by -1 (D's first output); 2: -1 and +1; 3: -1, 0, +1
  const at = (n, ch, y, u) => (u < 0 || u >= hw ? 0 : x.data[((n * c + ch) * hw + y) * hw + u]);
  const offsets = [[-1], [-1, 1], [-1, 0, 1]][per - 1];
  let err = 0;
  for (let n = 0; n < 2; n++)
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < hw; y++)
        for (let u = 0; u < hw; u++)
          offsets.forEach((o, m) => {
            const got = out.data[(((n * c + ch) * per + m) * hw + y) * hw + u];
            err = Math.max(err, Math.abs(got - at(n, ch, y, u + o)));
          });
  return err;
}

const summary = (ms) => {
  const s = ms.slice(WARMUP).sort((a, b) => a - b);
  return `min ${s[0].toFixed(2)} median ${s[s.length >> 1].toFixed(2)} ms`;
};

for (const [c, hw] of [
  [16, 32],
  [32, 16],
  [64, 8],
]) {
  const x = new ort.Tensor(
    'float32',
    Float32Array.from({ length: 128 * c * hw * hw }, () => Math.random() - 0.5),
    [128, c, hw, hw],
  );
  const sessions = {};
  for (const k of kinds)
    sessions[k] = await ort.InferenceSession.create(join(dir, `${k}_${c}_${hw}.onnx`), {
      intraOpNumThreads: 2,
      interOpNumThreads: 1,
    });
  const times = Object.fromEntries(kinds.map((k) => [k, []]));
  for (let r = 0; r < ROUNDS; r++)
    for (const k of kinds) {
      const t0 = process.hrtime.bigint();
      const out = await sessions[k].run({ dy: x });
      times[k].push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (r === 0 && k !== 'A') {
        const err = maxShiftError(Object.values(out)[0], x, c, hw);
        if (err !== 0) throw new Error(`${k}_${c}_${hw}: shifted values differ by ${err}`);
      }
    }
  console.log(`${c} ch @ ${hw}x${hw}: ` + kinds.map((k) => `${k} ${summary(times[k])}`).join(' | '));
}
