import { stringAttr } from '../../ir/attribute.js';
import { Value } from '../../ir/graph.js';
import { zeros } from './shape-ops.js';
import type { GradContext, GradRule } from './types.js';

function spatialAttrs(ctx: GradContext): { k: number[]; s: number[]; p: number[] } {
  const k = ctx.node.attrInts('kernel_shape')!;
  const s = ctx.node.attrInts(
    'strides',
    k.map(() => 1),
  );
  const p = ctx.node.attrInts(
    'pads',
    [...k, ...k].map(() => 0),
  );
  if (ctx.node.attrInt('ceil_mode', 0)) ctx.fail(`${ctx.node.opType} with ceil_mode=1 has no backward rule`);
  const autoPad = ctx.node.attrString('auto_pad', 'NOTSET');
  if (autoPad !== 'NOTSET' && autoPad !== 'VALID')
    ctx.fail(`${ctx.node.opType} with auto_pad=${autoPad} has no backward rule`);
  return { k, s, p };
}

/** ReduceMean/ReduceSum: dY (over the count for a mean) expanded back over the reduced axes. */
function reduceGrad(ctx: GradContext, mean: boolean): Value[] {
  const xShape = ctx.shape(ctx.node.input(0));
  const rank = xShape.length;
  // Axes: an attribute up to opset 17 (ReduceSum: 12), an input after; none given is every axis.
  const given = ctx.node.attrInts('axes') ?? (ctx.node.inputs[1] ? ctx.constant(ctx.node.input(1)) : []);
  if (!given.length && ctx.node.attrInt('noop_with_empty_axes', 0)) return [ctx.dy()!];
  const axes = (given.length ? given : [...xShape.keys()]).map((a) => (a + rank) % rank);
  const kept = xShape.map((d, i) => (axes.includes(i) ? 1 : d));
  const count = axes.reduce((a, i) => a * xShape[i]!, 1);
  const dy = mean ? ctx.e.scale(ctx.dy()!, 1 / count) : ctx.dy()!;
  return [ctx.e.op('Expand', [ctx.e.reshape(dy, kept), ctx.e.ints(xShape)])];
}

export const poolingRules: Record<string, GradRule> = {
  // The forward node is given its Indices output (flat positions in N*C*H*W); each dY element is then
  // scatter-added to the input position that won. Adding (not assigning) is what overlapping windows need.
  MaxPool: (ctx) => {
    spatialAttrs(ctx);
    if (ctx.node.attrInts('dilations', [1, 1]).some((d) => d !== 1))
      ctx.fail('MaxPool with dilations has no backward rule');
    const xShape = ctx.shape(ctx.node.input(0));
    let indices = ctx.node.outputs[1];
    if (!indices) {
      indices = new Value(ctx.e.graph.uniqueName(`${ctx.node.output().name}_indices`));
      ctx.node.appendOutput(indices);
    }
    const total = xShape.reduce((a, b) => a * b, 1);
    const flat = ctx.e.op(
      'ScatterElements',
      [zeros(ctx, [total]), ctx.e.reshape(indices, [-1]), ctx.e.reshape(ctx.dy()!, [-1])],
      {
        axis: 0,
        reduction: stringAttr('add'),
      },
    );
    return [ctx.e.reshape(flat, xShape)];
  },
  // A depthwise ConvTranspose with a constant 1/(kh*kw) kernel spreads each dY over its window.
  AveragePool: (ctx) => {
    const { k, s, p } = spatialAttrs(ctx);
    if (p.some((v) => v !== 0) && !ctx.node.attrInt('count_include_pad', 0))
      ctx.fail('AveragePool with padding and count_include_pad=0 has no backward rule');
    const xShape = ctx.shape(ctx.node.input(0));
    const yShape = ctx.shape(ctx.node.output());
    const c = xShape[1]!;
    const area = k.reduce((a, b) => a * b, 1);
    const w = ctx.e.floats(new Float32Array(c * area).fill(1 / area), [c, 1, ...k], 'avgpool_kernel');
    const outPad = k.map(
      (kk, i) => xShape[i + 2]! - ((yShape[i + 2]! - 1) * s[i]! + kk - p[i]! - p[i + k.length]!),
    );
    return [
      ctx.e.op('ConvTranspose', [ctx.dy()!, w], {
        group: c,
        strides: s,
        pads: p,
        kernel_shape: k,
        output_padding: outPad,
      }),
    ];
  },
  GlobalAveragePool: (ctx) => {
    const xShape = ctx.shape(ctx.node.input(0));
    const area = xShape.slice(2).reduce((a, b) => a * b, 1);
    return [ctx.e.op('Expand', [ctx.e.scale(ctx.dy()!, 1 / area), ctx.e.ints(xShape)])];
  },
  ReduceMean: (ctx) => reduceGrad(ctx, true),
  ReduceSum: (ctx) => reduceGrad(ctx, false),
};
