import * as ort from 'onnxruntime-node';
import { mixSeed, mulberry32, shuffle } from '../data/prng.js';
import {
  DataType,
  Graph,
  Model,
  Node,
  Tensor,
  Value,
  decodeModel,
  intAttr,
  serializeModel,
  tensorType,
} from '../ir/index.js';
import { meanDiagonal, solveSpd } from '../linalg/cholesky.js';
import { createSession, type RuntimeOptions } from '../runtime/session.js';
import { constantOf } from '../ir/index.js';
import type { GroupAnalysis, Space } from './groups.js';
import { probeShapes } from '../shapes/probe.js';
import { keptPositions } from './rewrite.js';
import { ancestorNodes, LayerInputs, runSession, type InputBatch } from './layer-inputs.js';

/**
 * Least-squares compensation (CaP-style reconstruction): after the channel choice, every layer that reads a
 * pruned space has lost some of its inputs. Its weights (on the inputs it kept) and bias are re-fitted so that
 * its output on calibration images matches the unpruned network's output of the same layer, by the normal
 * equations over its input patches (im2col for k×k convolutions), solved by Cholesky with a small ridge that
 * pulls towards the current weights. Layers are fitted in graph order, each on the inputs the already
 * compensated pruned network gives it, so later fits correct what earlier ones left. The statistics (patch
 * Gram matrix, patch × target products, patch sums) are computed by onnxruntime in a statistics graph built on
 * a copy of the pruned model; the targets come from a copy of the original with the layer outputs exposed.
 * A fit is kept only where it lowers the reconstruction error on held-out images.
 */

/** A layer to re-fit: found by its output value's name, which the rewrite keeps. */
export interface CompensationTarget {
  /** Name of the layer's (first) output value. */
  output: string;
  node: string;
  op: string;
  /** Positions of the original output the pruned layer keeps, ascending. */
  outKept: number[];
  /** Why the layer is not re-fitted, when it is not. */
  skip?: string;
}

/**
 * Which layers compensation re-fits: `consumers`, the layers whose inputs lost channels (CaP); `downstream`, also
 * every later linear layer, whose inputs kept their channels but drifted with the pruned layers before it.
 */
export type CompensationScope = 'consumers' | 'downstream';

/**
 * The consumers of pruned spaces (the layers whose inputs lost channels), in graph order: every node whose
 * handler declares a linear use (src/ops, `linearUse`) of a space that loses channels. A handler that
 * declines (a depthwise or grouped conv) gives the reason the layer is skipped. With `downstream`, every
 * linear layer after the first consumer too (a layer whose inputs did not drift stays exact and is not kept),
 * except those that read a frozen group.
 */
export function compensationTargets(
  analysis: GroupAnalysis,
  keep: readonly Uint8Array[],
  scope: CompensationScope = 'consumers',
): CompensationTarget[] {
  const kept = keptPositions(analysis, keep);
  const pruned = (sp: Space | undefined): boolean => !!sp && kept[sp.id]!.length < sp.size;
  const targets: CompensationTarget[] = [];
  for (const r of analysis.records) {
    if (!r.op.linearUse) continue;
    const use = r.op.linearUse(r.node, r.data);
    const base = { output: r.node.outputs[0]!.name, node: r.node.name, op: r.node.opType };
    if (typeof use === 'string') {
      // Only a declined layer whose input actually lost channels is worth reporting.
      const input = (r.data as { input?: Space } | undefined)?.input;
      if (pruned(input))
        targets.push({ ...base, outKept: [], skip: `${use}: each output reads only its own inputs` });
      continue;
    }
    if (!pruned(use.input) && (scope === 'consumers' || targets.length === 0)) continue;
    // A layer reading a frozen group that kept its channels decodes a fixed format (a detection head's DFL
    // projection over the box bins): re-fitted by least squares over every anchor it bent the boxes (the trained
    // SynthDet detector at 50% MACs: mAP50-95 0.30 with it, 0.41 without).
    if (!pruned(use.input) && analysis.groups[use.input.group]!.frozen.length > 0) continue;
    const target: CompensationTarget = { ...base, outKept: Array.from(kept[use.output.id]!) };
    if (r.node.opType === 'Gemm' && (r.node.attrFloat('alpha', 1) !== 1 || r.node.attrFloat('beta', 1) !== 1))
      target.skip = 'Gemm with alpha or beta other than 1';
    targets.push(target);
  }
  return targets;
}

export type { InputBatch } from './layer-inputs.js';

export interface CompensateOptions {
  /** Relative ridge: λ = ridge × the mean diagonal of the patch Gram matrix (default 1e-3). */
  ridge?: number;
  /** Spatial positions per image that enter a convolution's fit (sampled, seeded; default 128). */
  positions?: number;
  seed?: number;
  runtime?: RuntimeOptions;
  /** Bytes of activations kept between passes (LayerInputs; default FRONTIER_BUDGET; 0: every pass from the images). */
  frontierBytes?: number;
  log?: (line: string) => void;
}

export interface CompensatedLayer {
  node: string;
  op: string;
  /** Inputs per output (C·k², plus one for the bias) and outputs re-fitted. */
  inputs: number;
  outputs: number;
  /** Rows (images × positions) the fit used. */
  rows: number;
  /** Held-out reconstruction error relative to the target's energy, before and after the fit. */
  errorBefore: number;
  errorAfter: number;
  /** The fit was written: it lowered the held-out error by at least 1%, and the layer was not already exact. */
  kept: boolean;
}

export interface CompensationReport {
  layers: CompensatedLayer[];
  skipped: { node: string; reason: string }[];
  /** Sequential passes (layers that do not feed each other share one). */
  waves: number;
  /** Passes that started from the activations the previous pass handed on rather than from the images. */
  resumed?: number;
  seconds: number;
}

interface Layer {
  target: CompensationTarget;
  kind: 'conv' | 'gemm' | 'matmul';
  /** Inputs per output without the bias. */
  d: number;
  o: number;
  hasBias: boolean;
  transB: boolean;
  /** 2-D convolution geometry (top/left pads; the patch reader treats anything outside the input as zero). */
  conv?: {
    /** A ConvTranspose: weight [C, O, kh, kw], each output position reads the inputs that scatter to it. */
    transposed: boolean;
    kernel: [number, number];
    strides: [number, number];
    pads: [number, number];
    dilations: [number, number];
  };
}

interface Stats {
  gram: Float64Array;
  cross: Float64Array;
  sum: Float64Array;
  ySum: Float64Array;
  yy: number;
  rows: number;
}

const newStats = (d: number, o: number): Stats => ({
  gram: new Float64Array(d * d),
  cross: new Float64Array(d * o),
  sum: new Float64Array(d),
  ySum: new Float64Array(o),
  yy: 0,
  rows: 0,
});

/**
 * Re-fits the targets of `pruned` against `original` (see the module comment). Returns a new model; neither
 * argument is modified. `fit` batches feed the normal equations, `heldOut` batches decide whether each fit is
 * kept.
 */
export async function compensateModel(
  pruned: Model,
  original: Model | Uint8Array,
  targets: readonly CompensationTarget[],
  data: { fit: InputBatch[]; heldOut: InputBatch[] },
  options: CompensateOptions = {},
): Promise<{ model: Model; report: CompensationReport }> {
  const started = performance.now();
  const model = decodeModel(serializeModel(pruned));
  model.sourcePath = pruned.sourcePath;
  const originalBytes = original instanceof Uint8Array ? original : serializeModel(original);
  const skipped = targets.filter((t) => t.skip).map((t) => ({ node: t.node, reason: t.skip! }));
  const layers: Layer[] = [];
  for (const t of targets.filter((x) => !x.skip)) {
    const layer = describeLayer(model, t);
    if (typeof layer === 'string') skipped.push({ node: t.node, reason: layer });
    else layers.push(layer);
  }
  const report: CompensatedLayer[] = [];
  if (layers.length === 0)
    return {
      model,
      report: { layers: report, skipped, waves: 0, seconds: (performance.now() - started) / 1000 },
    };
  const dims = await outputDims(decodeModel(originalBytes), data.fit[0]!);
  const samplings = new Map(
    layers.map((l) => [
      l,
      samplingOf(
        l,
        dims.get(l.target.output)!,
        data.fit[0]!.shape[0]!,
        options.positions ?? 128,
        options.seed ?? 0,
      ),
    ]),
  );
  const batches = [
    ...data.fit.map((b) => ({ b, held: false })),
    ...data.heldOut.map((b) => ({ b, held: true })),
  ];
  const equations = await createSession(normalEquationsModel(), options.runtime);
  const waves = sequentialWaves(model, layers);
  // Two walks through the calibration images, a pass at a time: the original's layer outputs (the targets)
  // and the pruned model's layer inputs, each resuming where its previous pass stopped.
  const reference = new LayerInputs(
    batches.map((x) => x.b),
    options.runtime,
    options.frontierBytes,
  );
  const inputs = new LayerInputs(
    batches.map((x) => x.b),
    options.runtime,
    options.frontierBytes,
  );
  const originalModel = decodeModel(originalBytes);
  const held = batches.map((x) => x.held);
  const images = batches.reduce((a, x) => a + x.b.shape[0]!, 0);
  const targetBytes = (wave: Layer[]) =>
    wave.reduce((a, l) => a + images * rowsPerImage(samplings.get(l)!) * l.o * 4, 0);
  let cached = new Map<Layer, Float32Array[]>();
  try {
    for (const [w, wave] of waves.entries()) {
      options.log?.(
        `  compensation pass ${w + 1}/${waves.length}: ${wave.map((l) => l.target.node).join(', ')}`,
      );
      if (!cached.has(wave[0]!)) {
        // The targets of as many coming passes as TARGET_BUDGET holds, in one walk of the original: a walk per
        // pass costs a session each (ResNet-56, 54 passes: 46 vs 40 CPU-s), all at once ~1 GB.
        let take = w + 1;
        for (let used = targetBytes(wave); take < waves.length; take++) {
          used += targetBytes(waves[take]!);
          if (used > TARGET_BUDGET) break;
        }
        cached = await waveTargets(originalModel, waves.slice(w, take).flat(), samplings, reference);
      }
      const stats = await gatherStatistics(model, wave, samplings, cached, held, inputs, equations);
      wave.forEach((layer, i) => report.push(refit(model, layer, stats[i]!, options.ridge ?? 1e-3)));
    }
  } finally {
    await equations.release();
  }
  return {
    model,
    report: {
      layers: report,
      skipped,
      waves: waves.length,
      resumed: inputs.resumed,
      seconds: (performance.now() - started) / 1000,
    },
  };
}

/** Concrete dims of every value at the calibration batch size (static analysis, else one onnxruntime run). */
async function outputDims(model: Model, batch: InputBatch): Promise<Map<string, number[]>> {
  const input = model.graph.inputs.find((v) => !v.isInitializer)!;
  const inputDims = batch.feeds
    ? new Map(Object.entries(batch.feeds).map(([name, t]) => [name, t.dims.map(Number)]))
    : new Map([[input.name, batch.shape]]);
  const found = await probeShapes(model, inputDims);
  return new Map([...found.dims].map(([v, d]) => [v.name, d]));
}

function producerOf(model: Model, output: string): Node {
  const node = model.graph.nodes.find((n) => n.outputs[0]?.name === output);
  if (!node) throw new Error(`compensation: no node produces '${output}'`);
  return node;
}

function describeLayer(model: Model, target: CompensationTarget): Layer | string {
  const node = producerOf(model, target.output);
  const w = constantOf(node.inputs[1]);
  if (!w) return 'weights are not constant';
  const o = target.outKept.length;
  if (node.opType === 'Conv' || node.opType === 'ConvTranspose') {
    const transposed = node.opType === 'ConvTranspose';
    // Conv weights are [O, C, kh, kw]; ConvTranspose's [C, O, kh, kw] (group 1: the handler takes no other).
    if (w.dims[transposed ? 1 : 0] !== o)
      throw new Error(`compensation: ${node} has ${w.dims[transposed ? 1 : 0]} filters, expected ${o}`);
    if (w.dims.length !== 4) return 'only 2-D convolutions are re-fitted';
    const autoPad = node.attrString('auto_pad', 'NOTSET');
    if (autoPad !== 'NOTSET' && autoPad !== 'VALID') return `auto_pad ${autoPad} is not supported`;
    if (transposed && node.attr('output_shape')) return 'ConvTranspose with output_shape is not supported';
    const pads = node.attrInts('pads') ?? [0, 0, 0, 0];
    const conv = {
      transposed,
      kernel: [w.dims[2]!, w.dims[3]!] as [number, number],
      strides: (node.attrInts('strides') ?? [1, 1]) as [number, number],
      pads: [pads[0]!, pads[1]!] as [number, number],
      dilations: (node.attrInts('dilations') ?? [1, 1]) as [number, number],
    };
    return { target, kind: 'conv', d: w.size / o, o, hasBias: true, transB: true, conv };
  }
  if (node.opType === 'Gemm') {
    const transB = node.attrInt('transB', 0) === 1;
    return { target, kind: 'gemm', d: w.dims[transB ? 1 : 0]!, o, hasBias: true, transB };
  }
  return { target, kind: 'matmul', d: w.dims[0]!, o, hasBias: false, transB: false };
}

/** Splits layers (graph order) into passes: a layer starts a new pass when an earlier one of the pass feeds it. */
function sequentialWaves(model: Model, layers: Layer[]): Layer[][] {
  const waves: Layer[][] = [];
  let current: Layer[] = [];
  for (const layer of layers) {
    const ancestors = ancestorNodes([producerOf(model, layer.target.output).inputs[0]!]);
    const producers = current.map((l) => producerOf(model, l.target.output));
    if (producers.some((p) => ancestors.has(p))) {
      waves.push(current);
      current = [];
    }
    current.push(layer);
  }
  if (current.length) waves.push(current);
  return waves;
}

/** Layout of a layer's output: rows of the fit per image and the positions sampled among them. */
interface Sampling {
  channelsFirst: boolean;
  /** Output channels of the original layer. */
  channels: number;
  /** Output dims after the channels (conv: spatial) or before them (MatMul, the batch included). */
  inner: number[];
  /** Positions per image in the output (spatial size, or a MatMul's rows over the images). */
  length: number;
  /** Sampled positions (ascending); all when undefined. */
  positions: Int32Array | undefined;
}

function samplingOf(
  layer: Layer,
  dims: number[],
  images: number,
  maxPositions: number,
  seed: number,
): Sampling {
  if (layer.kind === 'conv') {
    const inner = dims.slice(2);
    const length = inner.reduce((a, b) => a * b, 1);
    let positions: Int32Array | undefined;
    if (length > maxPositions) {
      const all = Int32Array.from({ length }, (_, i) => i);
      positions = shuffle(all, mulberry32(mixSeed(seed, layer.d, layer.o)))
        .subarray(0, maxPositions)
        .sort();
    }
    return { channelsFirst: true, channels: dims[1]!, inner, length, positions };
  }
  // The batch need not come first: torch exports nn.MultiheadAttention's projections sequence-first ([T, N, E]).
  const inner = dims.slice(0, -1);
  const length = inner.reduce((a, b) => a * b, 1) / images;
  return { channelsFirst: false, channels: dims[dims.length - 1]!, inner, length, positions: undefined };
}

const rowsPerImage = (s: Sampling): number => s.positions?.length ?? s.length;

/**
 * The kept channels of a layer's original output at the sampled positions, as [images × positions, O] rows; a
 * MatMul's, every row in its own order, as the layer's input rows come.
 */
function gatherTargets(out: Float32Array, images: number, layer: Layer, s: Sampling): Float32Array {
  const kept = layer.target.outKept;
  const o = kept.length;
  if (!s.channelsFirst) {
    const rows = out.length / s.channels;
    const y = new Float32Array(rows * o);
    for (let r = 0; r < rows; r++) for (let j = 0; j < o; j++) y[r * o + j] = out[r * s.channels + kept[j]!]!;
    return y;
  }
  const per = rowsPerImage(s);
  const y = new Float32Array(images * per * o);
  for (let n = 0; n < images; n++)
    for (let r = 0; r < per; r++) {
      const pos = s.positions ? s.positions[r]! : r;
      const row = (n * per + r) * o;
      for (let j = 0; j < o; j++) y[row + j] = out[(n * s.channels + kept[j]!) * s.length + pos]!;
    }
  return y;
}

/**
 * im2col of a 2-D convolution's input at the sampled output positions: [images × positions, C·kh·kw]. For a
 * ConvTranspose, entry (c, i, j) of an output position is the input that kernel tap (i, j) carries there (zero
 * where none does: with stride 2 and a 2x2 kernel, one tap per position), so the output is again patch · W.
 */
function patches(x: Float32Array, xDims: number[], layer: Layer, s: Sampling): Float32Array {
  const g = layer.conv!;
  const [n, c, h, w] = xDims as [number, number, number, number];
  const [kh, kw] = g.kernel;
  const wo = s.inner[1]!;
  const per = rowsPerImage(s);
  const d = layer.d;
  const out = new Float32Array(n * per * d);
  // The input index kernel tap i reads for output index o on an axis, or -1 (outside: zero). A Conv reads
  // o·stride − pad + i·dilation; a ConvTranspose scatters input t to t·stride − pad + i·dilation, so reads
  // t = (o + pad − i·dilation) / stride where that divides.
  const source = g.transposed
    ? (o: number, i: number, axis: 0 | 1, size: number): number => {
        const t = o + g.pads[axis] - i * g.dilations[axis];
        if (t < 0 || t % g.strides[axis] !== 0) return -1;
        return t / g.strides[axis] < size ? t / g.strides[axis] : -1;
      }
    : (o: number, i: number, axis: 0 | 1, size: number): number => {
        const t = o * g.strides[axis] - g.pads[axis] + i * g.dilations[axis];
        return t >= 0 && t < size ? t : -1;
      };
  for (let img = 0; img < n; img++)
    for (let r = 0; r < per; r++) {
      const pos = s.positions ? s.positions[r]! : r;
      const oy = Math.floor(pos / wo);
      const ox = pos - oy * wo;
      const row = (img * per + r) * d;
      for (let i = 0; i < kh; i++) {
        const iy = source(oy, i, 0, h);
        if (iy < 0) continue;
        for (let j = 0; j < kw; j++) {
          const ix = source(ox, j, 1, w);
          if (ix < 0) continue;
          for (let ch = 0; ch < c; ch++)
            out[row + (ch * kh + i) * kw + j] = x[((img * c + ch) * h + iy) * w + ix]!;
        }
      }
    }
  return out;
}

/** A tiny model computing Pᵀ·P, Pᵀ·Y and the column sums of P for any [rows, D] and [rows, O]. */
function normalEquationsModel(): Uint8Array {
  const g = new Graph();
  g.name = 'normal_equations';
  const p = new Value('P', tensorType(DataType.FLOAT, ['rows', 'd']));
  const y = new Value('Y', tensorType(DataType.FLOAT, ['rows', 'o']));
  g.inputs.push(p, y);
  const axes = g.addInitializer(new Value('axes'), Tensor.int64([0]));
  const node = (op: string, inputs: Value[], out: string, attrs: [string, ReturnType<typeof intAttr>][]) => {
    const v = new Value(out, tensorType(DataType.FLOAT, undefined));
    const n = new Node(op, inputs, [v], `${out}_node`);
    for (const [k, a] of attrs) n.attributes.set(k, a);
    g.addNode(n);
    g.outputs.push(v);
  };
  node('Gemm', [p, p], 'gram', [['transA', intAttr(1)]]);
  node('Gemm', [p, y], 'cross', [['transA', intAttr(1)]]);
  node('ReduceSum', [p, axes], 'sum', [['keepdims', intAttr(0)]]);
  const m = new Model(g);
  m.irVersion = 8;
  m.opsetImports = [{ domain: '', version: 13 }];
  return serializeModel(m);
}

type Session = Awaited<ReturnType<typeof createSession>>;

/** Memory the original's cached layer targets may take (bytes): the targets of further passes come in later walks. */
const TARGET_BUDGET = 256 << 20;

/** The original network's outputs of a pass's layers, at their sampled positions and kept channels, per batch. */
async function waveTargets(
  original: Model,
  wave: Layer[],
  samplings: Map<Layer, Sampling>,
  reference: LayerInputs,
): Promise<Map<Layer, Float32Array[]>> {
  const targets = new Map<Layer, Float32Array[]>(wave.map((l) => [l, []]));
  await reference.forEachBatch(
    original,
    wave.map((l) => l.target.output),
    async (_k, values) => {
      for (const l of wave) {
        const out = values.get(l.target.output)!;
        targets.get(l)!.push(gatherTargets(out.data as Float32Array, out.dims[0]!, l, samplings.get(l)!));
      }
    },
  );
  return targets;
}

/**
 * One sequential pass: the layers' inputs from the current (partly compensated) pruned model, their patches
 * against the cached targets, accumulated into fit and held-out normal equations.
 */
async function gatherStatistics(
  model: Model,
  wave: Layer[],
  samplings: Map<Layer, Sampling>,
  targets: Map<Layer, Float32Array[]>,
  held: boolean[],
  inputs: LayerInputs,
  equations: Session,
): Promise<{ fit: Stats; heldOut: Stats }[]> {
  const inputOf = (l: Layer) => producerOf(model, l.target.output).inputs[0]!.name;
  const names = [...new Set(wave.map(inputOf))];
  const stats = wave.map((l) => ({ fit: newStats(l.d, l.o), heldOut: newStats(l.d, l.o) }));
  await inputs.forEachBatch(model, names, async (k, values) => {
    for (const [i, l] of wave.entries()) {
      const x = values.get(inputOf(l))!;
      const s = samplings.get(l)!;
      const p =
        l.kind === 'conv'
          ? patches(x.data as Float32Array, x.dims.map(Number), l, s)
          : (x.data as Float32Array);
      const y = targets.get(l)![k]!;
      const rows = y.length / l.o;
      const r = await runSession(
        equations.session,
        { P: new ort.Tensor('float32', p, [rows, l.d]), Y: new ort.Tensor('float32', y, [rows, l.o]) },
        ['gram', 'cross', 'sum'],
      );
      const acc = held[k] ? stats[i]!.heldOut : stats[i]!.fit;
      const add = (into: Float64Array, from: Float32Array) => {
        for (let q = 0; q < into.length; q++) into[q]! += from[q]!;
      };
      add(acc.gram, r.gram!.data as Float32Array);
      add(acc.cross, r.cross!.data as Float32Array);
      add(acc.sum, r.sum!.data as Float32Array);
      for (let q = 0; q < y.length; q++) {
        acc.ySum[q % l.o]! += y[q]!;
        acc.yy += y[q]! * y[q]!;
      }
      acc.rows += rows;
    }
  });
  return stats;
}

/** The normal equations [[Ptᵀ·Pt, Σp], [Σpᵀ, rows]] and right-hand sides [[Ptᵀ·Y], [ΣY]] (bias row last). */
function normalEquations(s: Stats, layer: Layer): { a: Float64Array; b: Float64Array; n: number } {
  const { d, o } = layer;
  const n = layer.hasBias ? d + 1 : d;
  const a = new Float64Array(n * n);
  const b = new Float64Array(n * o);
  for (let i = 0; i < d; i++) {
    a.set(s.gram.subarray(i * d, (i + 1) * d), i * n);
    b.set(s.cross.subarray(i * o, (i + 1) * o), i * o);
  }
  if (layer.hasBias) {
    for (let i = 0; i < d; i++) a[i * n + d] = a[d * n + i] = s.sum[i]!;
    a[d * n + d] = s.rows;
    b.set(s.ySum, d * o);
  }
  return { a, b, n };
}

/** ‖P·W − Y‖² from the statistics: Σ_o wₒᵀ·A·wₒ − 2·wₒᵀ·bₒ + Σy². */
function residual(
  a: Float64Array,
  b: Float64Array,
  n: number,
  o: number,
  w: Float64Array,
  yy: number,
): number {
  let e = yy;
  for (let i = 0; i < n; i++)
    for (let c = 0; c < o; c++) {
      const wic = w[i * o + c]!;
      if (wic === 0) continue;
      let aw = 0;
      for (let j = 0; j < n; j++) aw += a[i * n + j]! * w[j * o + c]!;
      e += wic * aw - 2 * wic * b[i * o + c]!;
    }
  return Math.max(0, e);
}

/**
 * Where weight (input i of the patch, output c) lies in the layer's weight tensor: [O, d] for a Conv or a Gemm
 * with transB, [d, O] for MatMul and Gemm, [C, O, kh, kw] for a ConvTranspose (i = (ch, tap)).
 */
function weightIndex(layer: Layer, i: number, c: number): number {
  const { d, o } = layer;
  if (layer.conv?.transposed) {
    const taps = layer.conv.kernel[0] * layer.conv.kernel[1];
    const ch = Math.floor(i / taps);
    return (ch * o + c) * taps + (i - ch * taps);
  }
  return layer.transB ? c * d + i : i * o + c;
}

/** The layer's current weights (and bias) as an [n, O] matrix, input-major, matching the statistics. */
function currentWeights(node: Node, layer: Layer, n: number): Float64Array {
  const { d, o } = layer;
  const w = constantOf(node.inputs[1])!.toFloat64();
  const out = new Float64Array(n * o);
  for (let i = 0; i < d; i++) for (let c = 0; c < o; c++) out[i * o + c] = w[weightIndex(layer, i, c)]!;
  const bias = node.inputs[2] ? constantOf(node.inputs[2])?.toFloat64() : undefined;
  if (layer.hasBias && bias)
    for (let c = 0; c < o; c++) out[d * o + c] = bias.length === 1 ? bias[0]! : bias[c]!;
  return out;
}

/** Relative reconstruction error that float32 statistics cannot resolve further. */
const EXACT = 1e-5;

function refit(
  model: Model,
  layer: Layer,
  stats: { fit: Stats; heldOut: Stats },
  ridge: number,
): CompensatedLayer {
  const node = producerOf(model, layer.target.output);
  const fit = normalEquations(stats.fit, layer);
  const n = fit.n;
  const before = currentWeights(node, layer, n);
  const lambda = ridge * meanDiagonal(fit.a, n);
  const after = solveSpd(fit.a, n, fit.b, layer.o, lambda, before);
  const held = normalEquations(stats.heldOut, layer);
  const energy = stats.heldOut.yy || 1;
  const errorBefore = residual(held.a, held.b, n, layer.o, before, stats.heldOut.yy) / energy;
  const errorAfter = residual(held.a, held.b, n, layer.o, after, stats.heldOut.yy) / energy;
  // The residuals come from float32 statistics: below EXACT the layer already matches its target to working
  // precision, and an improvement under 1% is as likely noise as gain.
  const kept = errorBefore > EXACT && errorAfter < errorBefore * 0.99;
  if (kept) writeWeights(model, node, layer, after);
  return {
    node: layer.target.node,
    op: layer.target.op,
    inputs: n,
    outputs: layer.o,
    rows: stats.fit.rows,
    errorBefore,
    errorAfter,
    kept,
  };
}

/** Sets input `index` of `node` to `tensor`: in place when only this node reads the initializer. */
function setConstInput(model: Model, node: Node, index: number, tensor: Tensor): void {
  const g = model.graph;
  const v = node.inputs[index];
  if (v?.initializer && v.uses.length === 1 && !g.inputs.includes(v)) {
    v.initializer.setData(tensor.data, tensor.dims);
    v.type = tensorType(DataType.FLOAT, [...tensor.dims]);
    return;
  }
  const name = g.uniqueName(v?.name ? `${v.name}_compensated` : `${node.name || node.opType}_bias`);
  const nv = g.addInitializer(new Value(name, tensorType(DataType.FLOAT, [...tensor.dims])), tensor);
  if (index < node.inputs.length) node.setInput(index, nv);
  else node.appendInput(nv);
}

function writeWeights(model: Model, node: Node, layer: Layer, w: Float64Array): void {
  const { d, o } = layer;
  const old = constantOf(node.inputs[1])!;
  const data = new Float32Array(d * o);
  for (let i = 0; i < d; i++) for (let c = 0; c < o; c++) data[weightIndex(layer, i, c)] = w[i * o + c]!;
  setConstInput(model, node, 1, Tensor.fromArray(DataType.FLOAT, old.dims, data));
  if (layer.hasBias)
    setConstInput(model, node, 2, Tensor.fromArray(DataType.FLOAT, [o], w.subarray(d * o, (d + 1) * o)));
}
