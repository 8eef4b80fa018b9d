import * as ort from 'onnxruntime-node';
import { firstLine } from '../data/error-text.js';
import { UserError } from '../errors.js';
import { DataType, Value, serializeModel, tensorType, type Model, type Node } from '../ir/index.js';
import { removeDeadNodes } from '../passes/dead-code.js';
import { analyzeShapes } from '../passes/infer-shapes.js';
import { removeUnusedInitializers } from '../passes/unused-initializers.js';
import { createSession, type RuntimeOptions } from '../runtime/session.js';
import { dataTypeOfOrt } from '../shapes/probe.js';

/** One batch of model input: NCHW float32 images, or a text model's feeds. */
export interface InputBatch {
  data: Float32Array;
  /** The images' shape; with `feeds`, the first feed's (the batch first). */
  shape: number[];
  /** Every input by name (token ids, masks), where the model takes more than one float image; `data` is empty. */
  feeds?: Readonly<Record<string, ort.Tensor>>;
}

/** Memory the cached frontier tensors may take over all batches (bytes); beyond it a pass starts from the images. */
export const FRONTIER_BUDGET = 1024 << 20;

/**
 * The values the sequential compensation passes read (each layer's input in the partly compensated network),
 * computed without re-running the whole prefix each pass: a pass also returns the values its part of the
 * network hands to the rest (the frontier: a residual stream, the input of the layer about to be re-fitted),
 * and the next pass starts from them. That is sound because a pass only re-fits layers outside the part it ran
 * (no layer of a pass feeds another of the same pass), so the frontier never goes stale. It turns the passes'
 * cost from one network prefix each (quadratic in depth) into about one network in total: ResNet-56's 54
 * re-fits on 1,000 images went from 77.7 to 37.9 CPU-seconds (`npm run bench -- compensate`, quiet).
 */
export class LayerInputs {
  private frontier = new Map<string, ort.Tensor[]>();
  /** Passes that started from a frontier. */
  resumed = 0;

  constructor(
    private readonly batches: readonly InputBatch[],
    private readonly runtime: RuntimeOptions | undefined,
    private readonly budget = FRONTIER_BUDGET,
  ) {}

  /** Calls `use` once per batch, in order, with the named values of `model` for that batch. */
  async forEachBatch(
    model: Model,
    names: string[],
    use: (k: number, values: Map<string, ort.Tensor>) => Promise<void>,
  ): Promise<void> {
    const notFloat = nonFloatValues(model);
    let pass = passModel(model, names, this.frontier, notFloat);
    let session: Session | undefined;
    try {
      session = pass.fetch.length ? await createSession(pass.bytes, this.runtime) : undefined;
    } catch (e) {
      if (this.frontier.size === 0) throw e;
      // A cut the runtime does not take (a value whose type the IR does not know): start from the images.
      this.frontier.clear();
      pass = passModel(model, names, this.frontier, notFloat);
      session = await createSession(pass.bytes, this.runtime);
    }
    if (this.frontier.size) this.resumed++;
    const next = new Map<string, ort.Tensor[]>();
    for (const n of pass.carried) next.set(n, this.frontier.get(n)!);
    let bytes = 0;
    try {
      for (const [k, b] of this.batches.entries()) {
        const values = new Map<string, ort.Tensor>();
        for (const n of names) if (this.frontier.has(n)) values.set(n, this.frontier.get(n)![k]!);
        if (session) {
          const feeds: Record<string, ort.Tensor> = {};
          for (const n of session.session.inputNames)
            feeds[n] =
              this.frontier.get(n)?.[k] ?? b.feeds?.[n] ?? new ort.Tensor('float32', b.data, b.shape);
          const outs = await runSession(session.session, feeds, pass.fetch);
          for (const n of pass.fetch) values.set(n, outs[n]!);
          for (const n of pass.crossing) {
            bytes += byteSize(outs[n]!);
            next.set(n, [...(next.get(n) ?? []), outs[n]!]);
          }
        }
        await use(k, values);
      }
    } finally {
      await session?.release();
    }
    for (const n of pass.carried) bytes += this.frontier.get(n)!.reduce((a, t) => a + byteSize(t), 0);
    this.frontier = bytes <= this.budget ? next : new Map();
  }
}

type Session = Awaited<ReturnType<typeof createSession>>;

interface PassModel {
  bytes: Uint8Array;
  /** Outputs the session computes: the wanted values not already held, and the new frontier. */
  fetch: string[];
  /** New frontier values the session computes. */
  crossing: string[];
  /** Frontier values still read beyond this pass, kept as they are. */
  carried: string[];
}

/**
 * A copy of the model cut at the frontier (held values become graph inputs), computing `names` and the values
 * its part of the network hands to nodes outside it.
 */
function passModel(
  model: Model,
  names: string[],
  frontier: Map<string, ort.Tensor[]>,
  notFloat: ReadonlySet<string>,
): PassModel {
  const m = model.clone();
  const g = m.graph;
  const byName = g.valueByName();
  for (const [name, tensors] of frontier) {
    const v = byName.get(name);
    if (!v?.producer) continue;
    const cut = new Value(name, tensorType(dataTypeOfOrt(tensors[0]!.type) ?? DataType.FLOAT, undefined));
    v.name = g.uniqueName(`${name}__cut`);
    g.replaceAllUsesWith(v, cut);
    g.inputs.push(cut);
  }
  const values = g.valueByName();
  const part = ancestorNodes(names.map((n) => values.get(n)!));
  const readBeyond = (v: Value): boolean => v.uses.some((u) => !part.has(u.node));
  const crossing = new Set<string>();
  // A value left out is recomputed by the next pass from its own inputs, so only float activations worth
  // holding are cut: not Constant outputs, not shape arithmetic.
  for (const node of part)
    for (const v of node.outputs)
      if (
        node.opType !== 'Constant' &&
        (v.elemType === undefined ? !notFloat.has(v.name) : v.elemType === DataType.FLOAT) &&
        readBeyond(v)
      )
        crossing.add(v.name);
  const carried = new Set<string>();
  for (const v of g.inputs) if (frontier.has(v.name) && !v.producer && readBeyond(v)) carried.add(v.name);
  const fetch = [...new Set([...names.filter((n) => !frontier.has(n)), ...crossing])];
  const outputs = fetch.map((n) => values.get(n)!);
  for (const v of outputs) v.type ??= tensorType(DataType.FLOAT, undefined);
  g.outputs.length = 0;
  g.outputs.push(...outputs);
  removeDeadNodes.run(m, undefined);
  removeUnusedInitializers.run(m, undefined);
  // Inputs nothing reads any more (the images, once the frontier is past them) are not fed.
  const read = new Set(g.nodes.flatMap((n) => n.inputs.filter((v): v is Value => !!v)));
  g.inputs.splice(
    0,
    g.inputs.length,
    ...g.inputs.filter((v) => v.isInitializer || read.has(v) || g.outputs.includes(v)),
  );
  return { bytes: serializeModel(m), fetch, crossing: [...crossing], carried: [...carried] };
}

const nonFloatCache = new WeakMap<Model, ReadonlySet<string>>();

/**
 * Names of the values shape inference finds to be other than float: the index arithmetic a text model computes
 * from its token ids at run time (Shape, Gather, Concat of a dynamic sequence length), which a decoded model
 * leaves untyped and which must not become a float cut. Inferred once per model (its structure never changes
 * while compensation re-fits its weights).
 */
function nonFloatValues(model: Model): ReadonlySet<string> {
  let names = nonFloatCache.get(model);
  if (!names) {
    const found = new Set<string>();
    try {
      for (const [v, t] of analyzeShapes(model).info)
        if (t.elemType !== undefined && t.elemType !== DataType.FLOAT) found.add(v.name);
    } catch {
      // No inference (an op it refuses): every untyped value is taken for a float, as before.
    }
    nonFloatCache.set(model, (names = found));
  }
  return names;
}

/** Every node the values depend on (their producers, theirs, ...). */
export function ancestorNodes(values: Value[]): Set<Node> {
  const seen = new Set<Node>();
  const work = [...values];
  while (work.length) {
    const p = work.pop()!.producer;
    if (!p || seen.has(p)) continue;
    seen.add(p);
    for (const i of p.inputs) if (i) work.push(i);
  }
  return seen;
}

function byteSize(t: ort.Tensor): number {
  return (t.data as { byteLength?: number }).byteLength ?? t.size * 8;
}

/** One onnxruntime run; its failure reaches the user as one line. */
export async function runSession(
  s: ort.InferenceSession,
  feeds: Record<string, ort.Tensor>,
  fetch: string[],
) {
  try {
    return await s.run(feeds, fetch);
  } catch (e) {
    throw new UserError(`onnxruntime failed during compensation (${firstLine(e)})`);
  }
}
