import { batchNormalization, instanceNormalization } from './normalization.js';
import { concat } from './concat.js';
import { constantOfShape } from './constant-of-shape.js';
import { conv } from './conv.js';
import { convTranspose } from './conv-transpose.js';
import { depthToSpace } from './depth-to-space.js';
import { elementwise } from './elementwise.js';
import { expand } from './expand.js';
import { gather } from './gather.js';
import { gemm } from './gemm.js';
import { layerNormalization } from './layer-normalization.js';
import { matmul } from './matmul.js';
import { pad } from './pad.js';
import { pool } from './pool.js';
import { reduce } from './reduce.js';
import { reshape } from './reshape.js';
import { resize } from './resize.js';
import { shape } from './shape.js';
import { slice } from './slice.js';
import { softmax } from './softmax.js';
import { split } from './split.js';
import { transpose } from './transpose.js';
import type { ChannelOp } from './types.js';
import { unary } from './unary.js';

/**
 * Every op kind the compiler understands, one handler each (src/ops/<op>.ts). Adding an op: write its
 * handler file and list it here. An op type with no handler freezes the channel groups it touches.
 */
const HANDLERS: readonly ChannelOp<never>[] = [
  conv,
  convTranspose,
  gemm,
  gather,
  matmul,
  batchNormalization,
  instanceNormalization,
  layerNormalization,
  unary,
  elementwise,
  pool,
  pad,
  concat,
  split,
  slice,
  transpose,
  softmax,
  reshape,
  resize,
  depthToSpace,
  reduce,
  shape,
  expand,
  constantOfShape,
] as ChannelOp<never>[];

const BY_OP_TYPE = new Map<string, ChannelOp<never>>();
for (const h of HANDLERS)
  for (const t of h.opTypes) {
    if (BY_OP_TYPE.has(t)) throw new Error(`op type ${t} has two handlers`);
    BY_OP_TYPE.set(t, h);
  }

/** The handler of a default-domain op type, if the compiler knows it. */
export function opHandler(opType: string): ChannelOp<unknown> | undefined {
  return BY_OP_TYPE.get(opType) as ChannelOp<unknown> | undefined;
}

/** Op types that have a MAC/parameter rule in inspect's cost model. */
export function costedOpTypes(): string[] {
  return [...BY_OP_TYPE].filter(([, h]) => h.cost).map(([t]) => t);
}
