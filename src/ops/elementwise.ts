import { constantOf } from '../ir/index.js';
import { perChannel, slicePerChannel } from './shared.js';
import type { ChannelOp, PerChannel, Space } from './types.js';

/**
 * Broadcasting binary and variadic ops. Inputs carrying the full channel dim link one to one with the output;
 * size-1 dims broadcast; a constant with the channel dim is a per-channel parameter that is sliced.
 */
export const elementwise: ChannelOp<PerChannel> = {
  opTypes: ['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mean', 'PRelu', 'Where'],

  link(node, ins, ctx) {
    const out = node.outputs[0];
    if (!out) return ctx.unknown(node, `${node}: no output`);
    const od = ctx.dims(out);
    const lead = ins.find((s) => s && ctx.dims(s.value)![s.axis] !== 1) ?? ins.find(Boolean)!;
    const ld = ctx.dims(lead.value)!;
    const axis = od ? lead.axis + (od.length - ld.length) : -1;
    const o = od ? ctx.newSpace(out, axis) : undefined;
    if (!o) return ctx.unknown(node, `${node}: output shape unknown`);
    node.inputs.forEach((v, i) => {
      if (!v) return;
      const d = ctx.dims(v) ?? constantOf(v)?.dims;
      const s: Space | undefined = ins[i];
      const at = d ? axis - (od!.length - d.length) : -1;
      const size = d && at >= 0 ? d[at]! : 1;
      if (s) {
        if (s.axis === at && s.size === o.size) ctx.same(s, o, node);
        else if (size !== 1 || s.axis !== at) {
          ctx.freeze(s, `${node} broadcasts channels onto another axis`);
          ctx.freeze(o, `${node} broadcasts channels onto another axis`);
        }
      } else if (size !== 1 && size === o.size) {
        if (ctx.isConst(v)) perChannel(ctx, node, i, at, o, node.opType === 'PRelu' ? 'slope' : 'operand');
        else ctx.freeze(o, `${node} combines channels with data the analysis does not track`);
      }
    });
  },

  slice: slicePerChannel,
};
