import * as ort from 'onnxruntime-node';
import type { ImageBatch } from '../data/batches.js';
import { firstLine } from '../data/error-text.js';
import { UserError } from '../errors.js';
import { cudaUnavailableReason, requireCuda, type Device } from './device.js';
import { modelBytesFromFile } from './preflight.js';

// onnxruntime's own log lines (coloured, on the process's stderr) would repeat what our one-line errors say.
ort.env.logLevel = 'fatal';

export interface RuntimeOptions {
  /** cpu (default), cuda (fails with install instructions when unavailable), auto (cuda if it loads, else cpu). */
  device?: Device;
  /** Intra-op threads; absent: onnxruntime's default, one per physical core. */
  threads?: number;
  /** The file named in messages when the model is given as bytes. */
  source?: string;
  /** Where `auto` reports what it picked; stderr by default. */
  notice?: (message: string) => void;
  /** Session options that replace the defaults below (profiling, execution mode; benches and the trainer). */
  overrides?: ort.InferenceSession.SessionOptions;
}

/** A loaded model, with the facts about its input and output that callers need. */
export interface ModelSession {
  readonly session: ort.InferenceSession;
  /** The model's file, or `<in-memory model>`; used in messages. */
  readonly source: string;
  readonly device: 'cpu' | 'cuda';
  readonly inputName: string;
  /** Declared input shape; symbolic dimensions (the batch) are strings. */
  readonly inputShape: readonly (number | string)[];
  readonly outputName: string;
  /** Every input: name, element type (onnxruntime's name) and declared shape. */
  readonly inputs: readonly { name: string; type: string; shape: readonly (number | string)[] }[];
  /** Runs one float32 batch and returns the first output's data (a model whose input is float32). */
  run(input: Float32Array, shape: readonly number[]): Promise<Float32Array>;
  /** Runs with the given feeds for every input (token ids, masks, several inputs); fetches the first output. */
  runFeeds(feeds: Record<string, ort.Tensor>): Promise<void>;
  release(): Promise<void>;
}

/**
 * Session options, chosen for batch inference of CNNs on a few CPU cores (see docs/runtime.md):
 * - graph optimisation `all`: constant folding and Conv+BN(+ReLU) fusion; it is also what the shared models'
 *   reference accuracies were measured with.
 * - sequential execution, 1 inter-op thread: a CNN is a chain, so the parallel executor only adds scheduling
 *   and competes for the cores the intra-op threads use.
 * - memory arena and memory pattern on: batches of one shape reuse the same planned buffers instead of
 *   allocating per run.
 * - no spinning of idle intra-op threads: spinning burns the CPU time that image decoding (libuv threads)
 *   needs between operators. Measured on 2 cores, ResNet-56 over 10,000 images: 23 CPU-seconds with spinning,
 *   18 without, for the same work.
 */
function sessionOptions(
  provider: 'cpu' | 'cuda',
  threads: number | undefined,
): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [provider],
    logSeverityLevel: 4,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    interOpNumThreads: 1,
    ...(threads !== undefined && { intraOpNumThreads: threads }),
    enableCpuMemArena: true,
    enableMemPattern: true,
    extra: { session: { 'intra_op.allow_spinning': '0' } },
  };
}

/** Creates a session from a model file or from serialized model bytes. */
export async function createSession(
  model: string | Uint8Array,
  options: RuntimeOptions = {},
): Promise<ModelSession> {
  const source = typeof model === 'string' ? model : (options.source ?? '<in-memory model>');
  if (options.threads !== undefined && !(Number.isInteger(options.threads) && options.threads > 0)) {
    throw new UserError(`--threads must be a positive integer, not ${options.threads}`);
  }
  // onnxruntime never opens a path itself: the file is read and checked here (regular file, external data
  // locations, hard links, structure) and handed over as bytes.
  const bytes = typeof model === 'string' ? modelBytesFromFile(model) : model;
  const provider = pickProvider(options);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, {
      ...sessionOptions(provider, options.threads),
      ...options.overrides,
    });
  } catch (e) {
    if (provider === 'cuda' && options.device === 'auto') {
      (options.notice ?? stderr)(
        `device auto: picked cpu (the CUDA provider failed to load: ${firstLine(e)})`,
      );
      return createSession(bytes, { ...options, device: 'cpu', source });
    }
    const what = provider === 'cuda' ? 'cannot create a CUDA session' : 'cannot load the model';
    throw new UserError(`${what} (${firstLine(e)})`, source);
  }
  if (options.device === 'auto' && provider === 'cuda')
    (options.notice ?? stderr)('device auto: picked cuda');
  return wrap(session, source, provider);
}

function pickProvider(options: RuntimeOptions): 'cpu' | 'cuda' {
  const device = options.device ?? 'cpu';
  if (device === 'cuda') requireCuda();
  if (device !== 'auto') return device;
  const reason = cudaUnavailableReason();
  if (reason) (options.notice ?? stderr)(`device auto: picked cpu (${reason})`);
  return reason ? 'cpu' : 'cuda';
}

function wrap(session: ort.InferenceSession, source: string, device: 'cpu' | 'cuda'): ModelSession {
  const input = session.inputMetadata[0];
  if (!input || session.outputNames.length === 0)
    throw new UserError('the model needs at least one input and one output', source);
  const inputShape = input.isTensor ? input.shape : [];
  const inputs = session.inputMetadata.map((m) => ({
    name: m.name,
    type: m.isTensor ? m.type : 'non-tensor',
    shape: m.isTensor ? m.shape : [],
  }));
  const outputName = session.outputNames[0]!;
  const fail = (shape: string, e: unknown): UserError =>
    new UserError(`onnxruntime failed on an input of shape ${shape} (${firstLine(e)})`, source);
  return {
    session,
    source,
    device,
    inputName: input.name,
    inputShape,
    outputName,
    inputs,
    async run(data, shape) {
      if (inputs.length !== 1 || inputs[0]!.type !== 'float32')
        throw new UserError(
          `the model's inputs are ${inputs.map((i) => `${i.name} (${i.type})`).join(', ')}; this command feeds one float32 image tensor`,
          source,
        );
      const feeds = { [input.name]: new ort.Tensor('float32', data, shape as number[]) };
      let results: ort.InferenceSession.ReturnType;
      try {
        results = await session.run(feeds, [outputName]);
      } catch (e) {
        throw fail(`[${shape.join(',')}]`, e);
      }
      return results[outputName]!.data as Float32Array;
    },
    async runFeeds(feeds) {
      try {
        await session.run(feeds, [outputName]);
      } catch (e) {
        throw fail(
          Object.values(feeds)
            .map((t) => `[${t.dims.join(',')}]`)
            .join(' '),
          e,
        );
      }
    },
    release: () => session.release(),
  };
}

/**
 * Fails (naming the model) when an input shape contradicts the model's fixed dimensions; symbolic
 * dimensions accept anything.
 */
export function checkInputShape(model: ModelSession, shape: readonly number[], what = 'the data'): void {
  const declared = model.inputShape;
  const fits =
    declared.length === shape.length && declared.every((d, i) => typeof d !== 'number' || d === shape[i]);
  if (!fits) {
    const show = (s: readonly (number | string)[]) => `[${s.join(',')}]`;
    throw new UserError(`expects input ${show(declared)} but ${what} gives ${show(shape)}`, model.source);
  }
}

/**
 * The feeds of one batch: a token set's (every input by name), else its images as the one float32 input
 * `inputName`.
 */
export function feedsOf(
  batch: Pick<ImageBatch, 'images' | 'shape' | 'feeds'>,
  inputName: string,
): Record<string, ort.Tensor> {
  return batch.feeds
    ? { ...batch.feeds }
    : { [inputName]: new ort.Tensor('float32', batch.images, batch.shape) };
}

function stderr(message: string): void {
  process.stderr.write(`adapruner: ${message}\n`);
}
