/**
 * Child process of bench/prune-large.ts, so each measurement's peak RSS is its own:
 *   build FILE MB   writes a Conv-BN-ReLU chain of about MB megabytes of float weights
 *   prune FILE OUT  runs `adapruner prune FILE --flops 0.5 -o OUT` and prints {"maxRssBytes": N}
 *   inspect FILE    runs `adapruner inspect FILE` and prints {"maxRssBytes": N} on its last line
 */
import { main } from '../src/cli/main.js';
import { DataType, Graph, Model, Node, Tensor, Value, saveModel, tensorType } from '../src/ir/index.js';

const [mode, file, arg] = process.argv.slice(2);
if (mode === 'build') {
  const width = 512;
  const convBytes = width * width * 9 * 4;
  const layers = Math.max(1, Math.round((Number(arg) * 2 ** 20) / convBytes));
  const g = new Graph();
  let x = new Value('input', tensorType(DataType.FLOAT, ['N', width, 4, 4]));
  g.inputs.push(x);
  let seed = 1;
  const rand = (n: number): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      a[i] = (seed / 2 ** 32 - 0.5) * 0.05;
    }
    return a;
  };
  for (let l = 0; l < layers; l++) {
    const w = g.addInitializer(
      new Value(`conv${l}.weight`),
      Tensor.fromArray(DataType.FLOAT, [width, width, 3, 3], rand(width * width * 9)),
    );
    const bn = ['weight', 'bias', 'mean', 'var'].map((k) =>
      g.addInitializer(
        new Value(`bn${l}.${k}`),
        Tensor.fromArray(
          DataType.FLOAT,
          [width],
          k === 'var'
            ? new Float32Array(width).fill(1)
            : rand(width).map((v) => (k === 'weight' ? 1 + v : v)),
        ),
      ),
    );
    const c = new Value(`c${l}`);
    const conv = new Node('Conv', [x, w], [c], `conv${l}`);
    conv.attributes.set('pads', { type: 7, value: [1, 1, 1, 1] });
    conv.attributes.set('kernel_shape', { type: 7, value: [3, 3] });
    g.addNode(conv);
    const b = new Value(`b${l}`);
    g.addNode(new Node('BatchNormalization', [c, ...bn], [b], `bn${l}`));
    const r = new Value(`r${l}`);
    g.addNode(new Node('Relu', [b], [r], `relu${l}`));
    x = r;
  }
  const out = new Value('output', tensorType(DataType.FLOAT, ['N', width, 4, 4]));
  g.addNode(new Node('Identity', [x], [out], 'out'));
  g.outputs.push(out);
  const model = new Model(g);
  model.opsetImports = [{ domain: '', version: 13 }];
  saveModel(model, file!);
} else if (mode === 'inspect') {
  const code = await main(['inspect', file!]);
  process.stdout.write(`\n${JSON.stringify({ code, maxRssBytes: process.resourceUsage().maxRSS * 1024 })}\n`);
} else if (mode === 'prune') {
  const code = await main([
    'prune',
    file!,
    '--flops',
    '0.5',
    '--no-measure-latency',
    '--no-report',
    '-o',
    arg!,
  ]);
  process.stdout.write(`${JSON.stringify({ code, maxRssBytes: process.resourceUsage().maxRSS * 1024 })}\n`);
}
