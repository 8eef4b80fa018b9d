import type { ChannelOp } from './types.js';

/** Elementwise functions of one tensor: position j of the output is position j of the input. */
export const unary: ChannelOp = {
  opTypes: [
    'Identity',
    'Dropout',
    'Relu',
    'LeakyRelu',
    'Sigmoid',
    'Tanh',
    'Clip',
    'HardSigmoid',
    'HardSwish',
    'Elu',
    'Selu',
    'Celu',
    'Softplus',
    'Softsign',
    'Neg',
    'Abs',
    'Exp',
    'Log',
    'Sqrt',
    'Cast',
    'Erf',
    'Gelu',
    'Mish',
    'Reciprocal',
    'Floor',
    'Ceil',
    'Round',
    'Sign',
    'ThresholdedRelu',
    'Sin',
    'Cos',
  ],

  link(node, ins, ctx) {
    const x = ins[0];
    const out = node.outputs[0];
    if (!x || !out) return ctx.unknown(node, `${node}: unsupported inputs`);
    // Clip's bounds and Dropout's ratio are scalars; channel data there would be a per-channel parameter.
    if (ins.slice(1).some(Boolean))
      return ctx.unknown(node, `${node} takes channel data in a parameter input`);
    ctx.passThrough(x, node, out);
    if (node.opType === 'Dropout' && node.outputs[1]?.uses.length)
      ctx.freeze(x, `${node}: mask output is used`);
  },
};
