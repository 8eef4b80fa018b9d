import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadModel } from '../src/ir/index.js';
import { probeInputDims, randomInputs } from '../src/shapes/probe.js';
import { TaylorProbe } from '../src/prune/taylor.js';

// Σ a·∂L/∂a of one BN output channel is the derivative of the loss when that channel is scaled by (1 + ε):
// scaling γ_c and β_c together scales a_c = γ_c·x̂_c + β_c. A central difference of the loss must agree (within
// 5%: float32 losses and the ReLU kinks a finite step crosses).
for (const name of ['vgg', 'resnet_a']) {
  test(`${name}: Taylor terms equal a central finite difference of the loss`, async () => {
    const model = loadModel(`fixtures/${name}.onnx`);
    const batch = 16;
    const [input, dims] = [...probeInputDims(model)][0]!;
    const images = randomInputs(model, new Map([[input, [batch, ...dims.slice(1)]]]), 5)[input]!
      .data as Float32Array;
    const labels = Int32Array.from({ length: batch }, (_, i) => (i * 3) % 10);
    const probe = await TaylorProbe.create(model, batch);
    try {
      const { terms } = await probe.terms(images, labels);
      const init = new Map(model.graph.initializers.map((v) => [v.name, v.initializer!]));
      let checked = 0;
      for (const bn of probe.norms.slice(0, 2)) {
        const t = terms.get(bn.node)!;
        const gamma = init.get(bn.scale)!.data as Float32Array;
        const beta = init.get(bn.bias)!.data as Float32Array;
        for (const c of [0, 1, Math.floor(t.length / 2)]) {
          const eps = 0.005;
          const scaled = (f: number) =>
            new Map([
              [bn.scale, gamma.map((v, i) => (i === c ? v * f : v))],
              [bn.bias, beta.map((v, i) => (i === c ? v * f : v))],
            ]);
          const up = (await probe.terms(images, labels, scaled(1 + eps))).loss;
          const down = (await probe.terms(images, labels, scaled(1 - eps))).loss;
          const fd = (up - down) / (2 * eps);
          assert.ok(
            Math.abs(fd - t[c]!) <= 0.05 * Math.abs(t[c]!) + 5e-4,
            `${bn.node} channel ${c}: Taylor ${t[c]} vs finite difference ${fd}`,
          );
          checked++;
        }
      }
      assert.equal(checked, 6);
    } finally {
      await probe.release();
    }
  });
}
