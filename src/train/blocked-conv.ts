import * as ort from 'onnxruntime-node';
import { DataType } from '../ir/data-type.js';
import { Graph, Node, Value } from '../ir/graph.js';
import { Model } from '../ir/model.js';
import { serializeModel } from '../ir/save.js';
import { tensorType } from '../ir/types.js';
import { Emitter } from './emitter.js';

const NCHWC = 'com.microsoft.nchwc';

let probedBlockSize: Promise<number> | undefined;

/**
 * onnxruntime's NCHWc channel block (16 with AVX-512, 8 with AVX2, 1 where its blocked kernels are off), read
 * from the channel count a `ReorderInput` pads a four-channel tensor to; 1 when the op is not available (another
 * execution provider build).
 */
export function nchwcBlockSize(): Promise<number> {
  probedBlockSize ??= (async () => {
    try {
      const session = await ort.InferenceSession.create(REORDER_PROBE);
      const out = await session.run({ x: new ort.Tensor('float32', new Float32Array(4), [1, 4, 1, 1]) });
      await session.release();
      return out.y!.dims[1] ?? 1;
    } catch {
      return 1;
    }
  })();
  return probedBlockSize;
}

/**
 * Runs the step graph's convolutions through onnxruntime's blocked-layout (NCHWc) kernels. onnxruntime's own
 * NchwcTransformer does this only for a Conv whose weight is a constant initializer (it reorders the weight
 * once at load time); in the step graph every weight is a graph input or computed from one, so each Conv fell
 * back to the NCHW im2col path, which on this CPU keeps about one of the intra-op threads busy. Here the
 * weight is reordered inside the graph (Reshape + Transpose: a few KB per layer per step), the activation by
 * `ReorderInput`, and the result back by `ReorderOutput`; onnxruntime then removes ReorderOutput ->
 * ReorderInput pairs between blocked ops.
 *
 * Covered, as the NchwcTransformer covers them: group 1 with Cout a multiple of the block and Cin either a
 * multiple of the block (OIHWBiBo weights) or below it (OIHWBo weights, NCHW input: the stem); depthwise with
 * C a multiple of the block (OIHWBo). Weights need a static shape (`shapeOf`). Everything else stays as is.
 */
export function useBlockedConvs(
  model: Model,
  shapeOf: (v: Value) => readonly number[] | undefined,
  block: number,
): number {
  if (block <= 1) return 0;
  const g = model.graph;
  let rewritten = 0;
  for (const conv of [...g.iterNodes()]) {
    if (conv.opType !== 'Conv' || (conv.domain !== '' && conv.domain !== 'ai.onnx')) continue;
    const w = conv.input(1);
    if (w.initializer) continue; // onnxruntime's NchwcTransformer handles these itself
    const ws = shapeOf(w);
    if (!ws || ws.length !== 4) continue;
    const layout = blockedLayout(ws, conv.attrInt('group', 1), block);
    if (!layout) continue;
    const before = g.nodes.length;
    // Named after the Conv they replace, so that profiles still tell forward from backward convolutions.
    const y = emitBlocked(
      new Emitter(g, `${conv.name || conv.output().name}/nchwc/`),
      conv,
      ws,
      layout,
      block,
    );
    const emitted = g.nodes.splice(before);
    g.nodes.splice(g.nodes.indexOf(conv), 0, ...emitted);
    g.replaceAllUsesWith(conv.output(), y);
    const name = conv.output().name;
    g.removeNode(conv);
    y.name = name; // keeps a graph output's name
    rewritten++;
  }
  if (rewritten && !model.opsetImports.some((o) => o.domain === NCHWC))
    model.opsetImports.push({ domain: NCHWC, version: 1 });
  return rewritten;
}

type Layout = 'BiBo' | 'Bo-nchw-input' | 'depthwise';

function blockedLayout(ws: readonly number[], group: number, block: number): Layout | undefined {
  const [cout, perGroupIn] = ws as [number, number];
  const cin = perGroupIn * group;
  if (cout % block !== 0) return undefined;
  if (group === 1) {
    if (cin % block === 0) return 'BiBo';
    return cin < block ? 'Bo-nchw-input' : undefined;
  }
  return group === cin && group === cout ? 'depthwise' : undefined;
}

function emitBlocked(e: Emitter, conv: Node, ws: readonly number[], layout: Layout, block: number): Value {
  const [cout, cinPerGroup, kh, kw] = ws as [number, number, number, number];
  const w = conv.input(1);
  // MLAS's filter layouts: OIHWBiBo = [O/B, I/B, kh, kw, Bi, Bo]; OIHWBo = [O/B, I, kh, kw, Bo].
  const blocked =
    layout === 'BiBo'
      ? e.transpose(
          e.reshape(w, [cout / block, block, cinPerGroup / block, block, kh, kw]),
          [0, 2, 4, 5, 3, 1],
        )
      : e.transpose(e.reshape(w, [cout / block, block, cinPerGroup, kh, kw]), [0, 2, 3, 4, 1]);
  const wb = e.reshape(blocked, ws);
  const x = layout === 'Bo-nchw-input' ? conv.input(0) : nchwc(e.op('ReorderInput', [conv.input(0)]));
  const attrs = Object.fromEntries(conv.attributes);
  const yb = nchwc(e.op('Conv', [x, wb, conv.inputs[2]], attrs));
  return nchwc(e.op('ReorderOutput', [yb], { channels: cout }));
}

function nchwc(v: Value): Value {
  v.producer!.domain = NCHWC;
  return v;
}

/** `x [1,4,1,1] -> ReorderInput -> y`: y's channel count is the block size (4 channels is its minimum). */
const REORDER_PROBE: Uint8Array = (() => {
  const g = new Graph();
  const x = new Value('x', tensorType(DataType.FLOAT, [1, 4, 1, 1]));
  const y = new Value('y', tensorType(DataType.FLOAT, undefined));
  g.inputs.push(x);
  g.addNode(new Node('ReorderInput', [x], [y], 'reorder', NCHWC));
  g.outputs.push(y);
  const m = new Model(g);
  m.opsetImports.push({ domain: '', version: 17 }, { domain: NCHWC, version: 1 });
  return serializeModel(m);
})();
