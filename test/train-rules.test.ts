import assert from 'node:assert/strict';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { floatAttr, intAttr, intsAttr, type Attribute } from '../src/ir/attribute.js';
import { DataType, Graph, Model, Node, Tensor, Value, serializeModel, tensorType } from '../src/ir/index.js';
import { mulberry32 } from '../src/data/prng.js';
import { carriedTensors, stepScalars } from '../src/train/loop.js';
import { buildStepGraph, type StepGraph, type StepGraphOptions } from '../src/train/step-graph.js';

/**
 * Backward rules the fixture models do not exercise (dilated, grouped and asymmetric-padded convs, a non-square
 * stride-1 kernel, LeakyRelu, HardSwish, HardSigmoid, Sub/Div broadcasting, Split, Transpose, Squeeze/Unsqueeze,
 * ReduceMean, MatMul, Gemm with transposes, padded AveragePool, strided Slice, a value used twice), checked
 * against central finite differences of the step graph's own loss. A wrong rule is off by O(1); float32
 * differences agree to ~1e-3.
 */
class TinyNet {
  readonly g = new Graph();
  private readonly random = mulberry32(11);
  private count = 0;
  x: Value;

  constructor(readonly inputShape: number[]) {
    this.x = new Value('input', tensorType(DataType.FLOAT, ['N', ...inputShape.slice(1)]));
    this.g.inputs.push(this.x);
  }

  param(dims: number[], scale = 0.5, offset = 0): Value {
    const data = Float32Array.from(
      { length: dims.reduce((a, b) => a * b, 1) },
      () => offset + scale * (this.random() * 2 - 1),
    );
    return this.g.addInitializer(new Value(`p${this.count++}`), Tensor.fromArray(DataType.FLOAT, dims, data));
  }

  ints(values: number[]): Value {
    return this.g.addInitializer(new Value(`i${this.count++}`), Tensor.int64(values));
  }

  op(type: string, inputs: Value[], attrs: Record<string, Attribute> = {}, outputs = 1): Value[] {
    const outs = Array.from({ length: outputs }, () => new Value(`v${this.count++}`));
    const node = new Node(type, inputs, outs, `n${this.count++}_${type}`);
    for (const [k, v] of Object.entries(attrs)) node.attributes.set(k, v);
    this.g.addNode(node);
    return outs;
  }

  one(type: string, inputs: Value[], attrs: Record<string, Attribute> = {}): Value {
    return this.op(type, inputs, attrs)[0]!;
  }

  finish(logits: Value): Model {
    logits.type = tensorType(DataType.FLOAT, ['N', 10]);
    this.g.outputs.push(logits);
    const m = new Model(this.g);
    m.opsetImports = [{ domain: '', version: 14 }];
    return m;
  }
}

function convNet(): Model {
  const t = new TinyNet([2, 4, 7, 7]);
  // group 2, dilation 2, asymmetric width padding: [2,6,7,5]
  let x = t.one('Conv', [t.x, t.param([6, 2, 3, 3]), t.param([6])], {
    group: intAttr(2),
    dilations: intsAttr([2, 2]),
    pads: intsAttr([2, 1, 2, 1]),
  });
  x = t.one('LeakyRelu', [x], { alpha: floatAttr(0.1) });
  // depthwise, stride 2: [2,6,4,3]
  x = t.one('Conv', [x, t.param([6, 1, 3, 3])], {
    group: intAttr(6),
    strides: intsAttr([2, 2]),
    pads: intsAttr([1, 1, 1, 1]),
  });
  x = t.one('HardSwish', [t.one('Mul', [x, t.param([1, 6, 1, 1], 1, 3)])]);
  // stride 2 with asymmetric pads, dilation 1: [2,4,2,1]
  x = t.one('Conv', [x, t.param([4, 6, 3, 3])], { strides: intsAttr([2, 2]), pads: intsAttr([0, 1, 1, 0]) });
  x = t.one('HardSigmoid', [x], { alpha: floatAttr(0.5), beta: floatAttr(0.5) });
  x = t.one('Flatten', [x], { axis: intAttr(1) });
  const logits = t.one('Add', [t.one('MatMul', [x, t.param([8, 10], 1)]), t.param([10])]);
  return t.finish(logits);
}

/** Stride-1 ungrouped convs (the row-shift dW): non-square kernels, asymmetric pads, none, pads above k-1. */
function stride1Net(): Model {
  const t = new TinyNet([2, 2, 5, 16]);
  // kernel 2x3, pads top 0, left 2, bottom 1, right 0: [2,3,5,16]
  let x = t.one('Conv', [t.x, t.param([3, 2, 2, 3]), t.param([3])], { pads: intsAttr([0, 2, 1, 0]) });
  x = t.one('LeakyRelu', [x], { alpha: floatAttr(0.1) });
  x = t.one('Conv', [x, t.param([3, 3, 3, 2])]); // no padding: [2,3,3,15]
  x = t.one('LeakyRelu', [x], { alpha: floatAttr(0.1) });
  // kernel 2x2, pads top 2, left 3, bottom 0, right 1: [2,2,4,18]
  x = t.one('Conv', [x, t.param([2, 3, 2, 2])], { pads: intsAttr([2, 3, 0, 1]) });
  x = t.one('Flatten', [x], { axis: intAttr(1) });
  return t.finish(t.one('MatMul', [x, t.param([144, 10], 0.3)]));
}

function shapeNet(): Model {
  const t = new TinyNet([2, 3, 6, 6]);
  let x = t.one('Conv', [t.x, t.param([4, 3, 1, 1])]);
  x = t.one('Sub', [x, t.param([1, 4, 1, 1])]);
  x = t.one('Div', [x, t.param([4, 1, 1], 0.3, 1)]);
  x = t.one('Sigmoid', [x]);
  const [a, b] = t.op('Split', [x, t.ints([1, 3])], { axis: intAttr(1) }, 2) as [Value, Value];
  x = t.one('Concat', [b, t.one('Mul', [a, a])], { axis: intAttr(1) }); // a used twice
  x = t.one('AveragePool', [x], {
    kernel_shape: intsAttr([3, 3]),
    strides: intsAttr([2, 2]),
    pads: intsAttr([1, 1, 1, 1]),
    count_include_pad: intAttr(1),
  }); // [2,4,3,3]
  x = t.one('Slice', [x, t.ints([0, 1]), t.ints([3, 3]), t.ints([2, 3]), t.ints([2, 1])]); // rows 0,2; cols 1,2: [2,4,2,2]
  x = t.one('Transpose', [x], { perm: intsAttr([0, 2, 3, 1]) }); // [2,2,2,4]
  x = t.one('ReduceMean', [x], { axes: intsAttr([1, 2]), keepdims: intAttr(1) }); // [2,1,1,4]
  x = t.one('Squeeze', [x, t.ints([1, 2])]); // [2,4]
  x = t.one('Unsqueeze', [x, t.ints([0])]); // [1,2,4]
  x = t.one('Reshape', [x, t.ints([-1, 4])]);
  const w = t.param([10, 4], 1.5); // transB: Gemm(x, w^T)
  x = t.one('Gemm', [x, w, t.param([10])], {
    transB: intAttr(1),
    alpha: floatAttr(0.7),
    beta: floatAttr(1.3),
  });
  const w2 = t.param([10, 10], 0.4);
  const logits = t.one('Gemm', [w2, x], { transA: intAttr(1), transB: intAttr(1) }); // (w2^T x^T)^T... shapes [10,10]x[10,2]
  return t.finish(t.one('Transpose', [logits], { perm: intsAttr([1, 0]) }));
}

interface Run {
  step: StepGraph;
  session: ort.InferenceSession;
  feeds: Record<string, ort.Tensor>;
  params: Map<string, Float32Array>;
}

/**
 * The two images' labels are 3 and 7; the teacher's logits are random, plus a margin of 10 on the class it
 * predicts for each image (`teacherPredicts`).
 */
async function prepare(
  model: Model,
  options: Partial<StepGraphOptions> = {},
  teacherPredicts: readonly [number, number] = [3, 2],
): Promise<Run> {
  // Every float initializer is trained here, so Sub/Div/Mul operands get gradients too.
  const step = await buildStepGraph(model, {
    batchSize: 2,
    exposeGradients: true,
    trainable: () => true,
    ...options,
  });
  const session = await ort.InferenceSession.create(serializeModel(step.model), { intraOpNumThreads: 1 });
  const random = mulberry32(5);
  const size = step.imageShape.reduce((a, b) => a * b, 1);
  const feeds: Record<string, ort.Tensor> = {
    [step.inputs.images]: new ort.Tensor(
      'float32',
      Float32Array.from({ length: size }, () => random() * 2 - 1),
      step.imageShape,
    ),
    [step.inputs.labels]: new ort.Tensor('int64', BigInt64Array.from([3n, 7n]), [2]),
    [step.inputs.lr]: new ort.Tensor('float32', new Float32Array([0.1]), []),
  };
  if (step.inputs.teacherLogits) {
    const t = Float32Array.from({ length: 20 }, () => 3 * (random() * 2 - 1));
    teacherPredicts.forEach((c, image) => (t[image * 10 + c]! += 10));
    feeds[step.inputs.teacherLogits] = new ort.Tensor('float32', t, [2, 10]);
  }
  const init = new Map(model.graph.initializers.map((v) => [v.name, v.initializer!.data as Float32Array]));
  const params = new Map<string, Float32Array>();
  for (const p of step.params) {
    params.set(p.name, Float32Array.from(init.get(p.name)!));
    feeds[p.name] = new ort.Tensor('float32', params.get(p.name)!, p.shape);
    for (const buffer of [p.momentum, p.secondMoment])
      if (buffer)
        feeds[buffer.input] = new ort.Tensor(
          'float32',
          new Float32Array(params.get(p.name)!.length),
          p.shape,
        );
  }
  return { step, session, feeds, params };
}

/** Checks `perParam` random entries of each parameter's gradient, or all of them when it has no more. */
async function checkFiniteDifferences(
  model: Model,
  options: Partial<StepGraphOptions> = {},
  perParam = 4,
): Promise<number> {
  const { step, session, feeds, params } = await prepare(model, options);
  try {
    const out = await session.run(feeds);
    const lossAt = async (): Promise<number> =>
      ((await session.run(feeds))[step.outputs.loss]!.data as Float32Array)[0]!;
    const h = 3e-3;
    const pick = mulberry32(9);
    let checked = 0;
    for (const p of step.params) {
      const grad = out[p.grad!]!.data as Float32Array;
      const w = params.get(p.name)!;
      for (let k = 0; k < Math.min(perParam, w.length); k++) {
        const i = perParam >= w.length ? k : Math.floor(pick() * w.length);
        const keep = w[i]!;
        w[i] = keep + h;
        const up = await lossAt();
        w[i] = keep - h;
        const down = await lossAt();
        w[i] = keep;
        const numeric = (up - down) / (2 * h);
        assert.ok(
          Math.abs(numeric - grad[i]!) <= 5e-4 + 3e-2 * Math.abs(grad[i]!),
          `${p.name}[${i}]: graph ${grad[i]} vs finite difference ${numeric}`,
        );
        checked++;
      }
    }
    return checked;
  } finally {
    await session.release();
  }
}

test('conv variants (grouped, dilated, depthwise stride 2, asymmetric pads) and activations match finite differences', async () => {
  assert.equal(await checkFiniteDifferences(convNet()), 7 * 4);
});

test('stride-1 convs with a non-square kernel and asymmetric pads: every weight gradient matches finite differences', async () => {
  assert.equal(await checkFiniteDifferences(stride1Net(), {}, 300), 36 + 3 + 54 + 24 + 300);
});

test('broadcasting arithmetic, Split/Concat, padded AveragePool, strided Slice, shape ops, Gemm transposes match finite differences', async () => {
  assert.equal(await checkFiniteDifferences(shapeNet()), 6 * 4);
});

test('label smoothing and distillation terms match finite differences', async () => {
  await checkFiniteDifferences(convNet(), { labelSmoothing: 0.1 });
  await checkFiniteDifferences(convNet(), { distillation: { temperature: 3, alpha: 0.6 } });
  // One image where the teacher is right (gated in), one where it is wrong (labels only).
  await checkFiniteDifferences(convNet(), {
    distillation: { temperature: 3, alpha: 0.6, gate: 'teacher-correct' },
  });
});

test('gated distillation is plain distillation where the teacher is right and the plain loss where it is wrong', async () => {
  const lossOf = async (options: Partial<StepGraphOptions>, teacher?: [number, number]): Promise<number> => {
    const { step, session, feeds } = await prepare(convNet(), options, teacher);
    try {
      return ((await session.run(feeds))[step.outputs.loss]!.data as Float32Array)[0]!;
    } finally {
      await session.release();
    }
  };
  const kd = { temperature: 3, alpha: 0.6 };
  const gated = { ...kd, gate: 'teacher-correct' as const };
  const close = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b));
  const right: [number, number] = [3, 7];
  const wrong: [number, number] = [2, 2];
  const plain = await lossOf({});
  assert.ok(close(await lossOf({ distillation: gated }, right), await lossOf({ distillation: kd }, right)));
  assert.ok(close(await lossOf({ distillation: gated }, wrong), plain));
  // Not a vacuous equality: with a wrong teacher, ungated distillation does change the loss.
  assert.ok(!close(await lossOf({ distillation: kd }, wrong), plain));
  const mixed = await lossOf({ distillation: gated }, [3, 2]);
  assert.ok(!close(mixed, plain) && !close(mixed, await lossOf({ distillation: kd }, [3, 2])));
});

test('Nesterov SGD with weight decay: w - lr * (g + wd*w + momentum * buf) on the first step', async () => {
  const { step, session, feeds, params } = await prepare(convNet(), {
    sgd: { momentum: 0.9, nesterov: true, weightDecay: 0.01 },
  });
  const out = await session.run(feeds);
  for (const p of step.params) {
    const [g, w, updated] = [
      out[p.grad!]!.data as Float32Array,
      params.get(p.name)!,
      out[p.updated]!.data as Float32Array,
    ];
    const wd = p.shape.length >= 2 ? 0.01 : 0;
    assert.equal(p.weightDecay, wd);
    for (let i = 0; i < w.length; i++) {
      const d = g[i]! + wd * w[i]!;
      const expected = w[i]! - 0.1 * (d + 0.9 * d);
      assert.ok(Math.abs(updated[i]! - expected) <= 1e-6 * (1 + Math.abs(expected)), `${p.name}[${i}]`);
    }
  }
  await session.release();
});

test('AdamW: two steps equal torch.optim.AdamW written out in float64 (bias corrections, decoupled decay)', async () => {
  const [lr, beta1, beta2, eps, wd] = [0.1, 0.9, 0.999, 1e-8, 0.01];
  const { step, session, feeds, params } = await prepare(convNet(), {
    sgd: { optimizer: 'adamw', momentum: beta1, weightDecay: wd },
  });
  assert.ok(step.inputs.adam, 'AdamW takes its bias corrections as inputs');
  assert.ok(step.params.every((p) => p.momentum && p.secondMoment));
  // torch's state, from torch/optim/adamw.py (_single_tensor_adamw): exp_avg, exp_avg_sq, the parameter.
  const state = new Map(
    step.params.map((p) => {
      const w = Float64Array.from(params.get(p.name)!);
      return [p.name, { w, m: new Float64Array(w.length), v: new Float64Array(w.length) }];
    }),
  );
  let changed = 0;
  for (let t = 1; t <= 2; t++) {
    Object.assign(feeds, stepScalars(step, lr, t - 1));
    const out = await session.run(feeds);
    for (const p of step.params) {
      const g = out[p.grad!]!.data as Float32Array;
      const ours = out[p.updated]!.data as Float32Array;
      const s = state.get(p.name)!;
      const decay = p.shape.length >= 2 ? wd : 0;
      for (let i = 0; i < s.w.length; i++) {
        s.w[i]! *= 1 - lr * decay;
        s.m[i] = beta1 * s.m[i]! + (1 - beta1) * g[i]!;
        s.v[i] = beta2 * s.v[i]! + (1 - beta2) * g[i]! * g[i]!;
        const denom = Math.sqrt(s.v[i]!) / Math.sqrt(1 - beta2 ** t) + eps;
        s.w[i]! -= ((lr / (1 - beta1 ** t)) * s.m[i]!) / denom;
        const tolerance = 1e-5 * (1 + Math.abs(s.w[i]!));
        assert.ok(
          Math.abs(ours[i]! - s.w[i]!) <= tolerance,
          `${p.name}[${i}] at step ${t}: ${ours[i]} vs ${s.w[i]}`,
        );
        if (Math.abs(ours[i]! - params.get(p.name)![i]!) > 1e-3) changed++;
      }
    }
    for (const [from, to] of carriedTensors(step)) feeds[to] = out[from] as ort.Tensor;
  }
  assert.ok(changed > 0, 'the steps moved the parameters');
  await session.release();
});
