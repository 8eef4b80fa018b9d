// Times the dY width-shift forms written by dy-shift.py (docs/finetune.md, sixth round): the kinds named on the
// command line alternate in one process, 2 intra-op threads, and every output of every form is checked against
// the shift computed directly. Usage: node bench/micro/dy-shift.mjs [DIR] [A B C D]
import * as ort from 'onnxruntime-node';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const KINDS = ['A', 'B', 'C', 'D'];
const args = process.argv.slice(2);
const dir =
  args.length && !KINDS.includes(args[0]) ? args.shift() : fileURLToPath(new URL('out', import.meta.url));
const kinds = args.length ? args : KINDS;
const unknown = kinds.filter((k) => !KINDS.includes(k));
if (unknown.length) {
  console.error(`dy-shift: unknown form ${unknown.join(', ')} (${KINDS.join(', ')}; a folder comes first)`);
  process.exit(2);
}
const ROUNDS = 120;
const WARMUP = 5;
/** The width offsets each output holds, channel-interleaved where there are several: out[u] = dy[u + offset]. */
const OFFSETS = { a0: [-1], a2: [1], b: [-1, 1], d0: [-1], d2: [1], c3: [-1, 0, 1] };

function maxShiftError(name, out, x, c, hw) {
  const offsets = OFFSETS[name];
  const per = offsets.length;
  const at = (n, ch, y, u) => (u < 0 || u >= hw ? 0 : x.data[((n * c + ch) * hw + y) * hw + u]);
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
  for (const k of kinds) {
    const file = join(dir, `${k}_${c}_${hw}.onnx`);
    if (!existsSync(file)) {
      console.error(
        `dy-shift: ${file} is missing: write the models first (/usr/bin/python3 bench/micro/dy-shift.py)`,
      );
      process.exit(2);
    }
    sessions[k] = await ort.InferenceSession.create(file, { intraOpNumThreads: 2, interOpNumThreads: 1 });
  }
  const times = Object.fromEntries(kinds.map((k) => [k, []]));
  for (let r = 0; r < ROUNDS; r++)
    for (const k of kinds) {
      const t0 = process.hrtime.bigint();
      const out = await sessions[k].run({ dy: x });
      times[k].push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (r === 0)
        for (const [name, value] of Object.entries(out)) {
          const err = maxShiftError(name, value, x, c, hw);
          if (err !== 0) {
            console.error(`dy-shift: ${k}_${c}_${hw} output '${name}' differs from the shift by ${err}`);
            process.exit(1);
          }
        }
    }
  console.log(`${c} ch @ ${hw}x${hw}: ` + kinds.map((k) => `${k} ${summary(times[k])}`).join(' | '));
}
