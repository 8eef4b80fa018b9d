import { escapeControl } from '../escape.js';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { UserError } from '../errors.js';
import { loadModel } from '../ir/load.js';
import { idBounds } from '../shapes/probe.js';
import { batchSize, checkNumbers, threads } from './numbers.js';
import { benchmark, type LatencyStats } from '../runtime/benchmark.js';
import { createProgress } from '../runtime/progress.js';
import { createSession, type ModelSession } from '../runtime/session.js';
import { renderTable } from '../report/table.js';
import { runtimeFromArgs, withRuntimeOptions, type RuntimeArgs } from './eval.js';
import { inputShapesFor, parseInputShapes } from './input-shape.js';

interface BenchArgs extends RuntimeArgs {
  model: string;
  vs?: string;
  batch: number;
  warmup: number;
  runs?: number;
  seconds: number;
  inputShape?: string | string[];
  json: boolean;
}

export const benchCommand: CommandModule<object, BenchArgs> = {
  command: 'bench <model>',
  describe:
    'Measure inference latency (median, p90) and throughput; with --vs, compare two models in one run',
  builder: (y) =>
    withRuntimeOptions(y.positional('model', { type: 'string', demandOption: true, describe: 'ONNX model' }))
      .option('vs', { type: 'string', describe: 'A second model, run alternately with the first' })
      .option('batch', { type: 'number', default: 1, describe: 'Images per run' })
      .option('warmup', { type: 'number', default: 3, describe: 'Untimed runs per model first' })
      .option('runs', {
        type: 'number',
        describe: 'Timed runs per model (default: as many as fit in --seconds)',
      })
      .option('seconds', { type: 'number', default: 10, describe: 'Time budget for the timed runs' })
      .option('input-shape', {
        type: 'string',
        describe:
          'Input shape where the model leaves dimensions open, as for inspect: 1x3x224x224 (--batch sets the first)',
      })
      .option('json', {
        type: 'boolean',
        default: false,
        describe: 'Print one JSON object instead of text',
      }) as unknown as Argv<BenchArgs>,
  handler: async (args: ArgumentsCamelCase<BenchArgs>) => {
    checkNumbers(args, {
      batch: batchSize,
      warmup: { int: true, min: 0, max: 1e6 },
      runs: { int: true, min: 1, max: 1e9 },
      seconds: { above: 0, max: 86400 },
      threads,
    });
    const runtime = runtimeFromArgs(args);
    const sessions: ModelSession[] = [await createSession(args.model, runtime)];
    if (args.vs !== undefined) sessions.push(await createSession(args.vs, runtime));
    // An option that changes nothing is an error, not silently ignored.
    if (args.inputShape !== undefined && sessions.every((m) => m.inputShape.slice(1).every(isFixed))) {
      await Promise.all(sessions.map((m) => m.release()));
      throw new UserError(
        `--input-shape applies to models with open input dimensions; the input is fixed at ${sessions[0]!.inputShape.slice(1).join('x')} after the batch: drop it`,
        args.model,
      );
    }
    // Token ids must index the embedding: read its size off the graph, only for models that take ids.
    const takesIds = (m: ModelSession): boolean =>
      m.inputs.some((i) => i.type === 'int64' || i.type === 'int32');
    const idBoundsOf = sessions.some(takesIds) ? idBounds(loadModel(args.model)) : undefined;
    const progress = createProgress('bench', 100);
    let stats: LatencyStats[];
    try {
      stats = await benchmark(sessions, {
        batch: args.batch,
        warmup: args.warmup,
        seconds: args.seconds,
        ...(args.runs !== undefined && { runs: args.runs }),
        ...(idBoundsOf && { idBounds: idBoundsOf }),
        ...(args.inputShape !== undefined && {
          inputShape: shapeWithoutBatch(args.inputShape, args.model),
        }),
        onProgress: (fraction) => progress.update(Math.round(100 * fraction)),
      });
    } finally {
      progress.stop();
      await Promise.all(sessions.map((s) => s.release()));
    }
    // Ratio > 1: the --vs model takes longer per batch than MODEL (MODEL is that many times faster).
    const ratio = stats.length === 2 ? stats[1]!.medianMs / stats[0]!.medianMs : undefined;
    if (args.json) {
      const report = {
        device: sessions[0]!.device,
        threads: args.threads ?? null,
        models: stats,
        ...(ratio !== undefined && { speedup: ratio }),
      };
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return;
    }
    const table = renderTable(
      [
        'model',
        'batch',
        'runs',
        ...['median ms', 'p90 ms', 'images/s'].map((header) => ({ header, align: 'right' as const })),
      ],
      stats.map((s) => [
        s.model,
        s.batch,
        s.runs,
        s.medianMs.toFixed(2),
        s.p90Ms.toFixed(2),
        s.imagesPerSecond.toFixed(1),
      ]),
    );
    const comparison =
      ratio !== undefined
        ? `\n${args.model} is ${ratio.toFixed(2)}x the speed of ${args.vs} (median latency ratio)`
        : '';
    process.stdout.write(`${escapeControl(`${table}${comparison}`, true)}\n`);
  },
};

function isFixed(d: unknown): boolean {
  return typeof d === 'number';
}

/**
 * `--input-shape` in inspect's format; the benchmark takes the dims after the batch. One shape serves every
 * input (token ids and a mask of the same length); NAME=SHAPE is checked against the model as everywhere.
 */
function shapeWithoutBatch(text: string | string[], file: string): number[] | Record<string, number[]> {
  const shape = parseInputShapes(text)!;
  if (Array.isArray(shape)) return shape.slice(1);
  const byName = inputShapesFor(loadModel(file), text, file)!;
  return Object.fromEntries(Object.entries(byName).map(([name, dims]) => [name, dims.slice(1)]));
}
