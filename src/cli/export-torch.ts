import fs from 'node:fs';
import path from 'node:path';
import type { ArgumentsCamelCase, CommandModule } from 'yargs';
import { tempPathFor, writeChunksSync } from '../atomic-write.js';
import { UserError } from '../errors.js';
import { INPUT_SHAPE_OPTION } from './input-shape.js';
import { renderPythonModule } from '../handoff/python-module.js';
import { prunedWeights, torchSpec, type WeightBlob } from '../handoff/torch-spec.js';
import { readPlanFile, toolVersion } from '../prune/index.js';

interface ExportTorchArgs {
  model: string;
  inputShape?: string | string[];
  plan: string;
  weights?: string;
  output: string;
  json: boolean;
}

export const exportTorchCommand: CommandModule<object, ExportTorchArgs> = {
  command: 'export-torch <model>',
  describe:
    'Write a Python module (needs only torch) that slices the exported nn.Module to a plan, for fine-tuning in PyTorch (docs/torch-handoff.md)',
  builder: (y) =>
    y
      .positional('model', {
        type: 'string',
        demandOption: true,
        describe: 'The original ONNX file the plan was made for (exported from torch with BN kept)',
      })
      .option('plan', {
        type: 'string',
        demandOption: true,
        requiresArg: true,
        describe: 'The plan (prune --plan-out)',
      })
      .option('weights', {
        type: 'string',
        requiresArg: true,
        describe:
          'The pruned ONNX file made with that plan: its (recalibrated, fine-tuned) weights go to OUT.weights.bin for apply(model, weights=True)',
      })
      .option('output', {
        alias: 'o',
        type: 'string',
        demandOption: true,
        requiresArg: true,
        describe: 'The Python module to write, e.g. slim.py (written whole or not at all)',
      })
      .option('input-shape', INPUT_SHAPE_OPTION)
      .option('json', {
        type: 'boolean',
        default: false,
        describe: 'Print a JSON summary (files, sliced parameters, modules) instead of text',
      })
      .example('$0 export-torch resnet18.onnx --plan plan.json --weights slim.onnx -o slim.py', ''),
  handler: async (argv: ArgumentsCamelCase<ExportTorchArgs>) => {
    const out = argv.output;
    if (!out.endsWith('.py')) throw new UserError('the output must be a Python file ending in .py', out);
    const stem = path.basename(out, '.py');
    if (!/^[A-Za-z_]\w*$/.test(stem))
      throw new UserError(`'${stem}' is not a Python module name (letters, digits, _)`, out);
    const weightsFile = argv.weights ? `${stem}.weights.bin` : undefined;
    const weightsPath = weightsFile && path.join(path.dirname(out), weightsFile);
    const inputs = [argv.model, argv.plan, argv.weights].filter((f): f is string => !!f);
    for (const target of [out, weightsPath])
      if (target && inputs.some((f) => sameFile(f, target)))
        throw new UserError('would overwrite an input of this run', target);

    const plan = readPlanFile(argv.plan);
    const spec = await torchSpec(argv.model, plan, argv.plan, argv.inputShape);
    const weights: WeightBlob | undefined = argv.weights ? prunedWeights(argv.weights, spec) : undefined;
    const text = renderPythonModule(
      stem,
      spec,
      {
        tool: `adapruner ${toolVersion()}`,
        model: path.basename(argv.model),
        plan: path.basename(argv.plan),
        ...(weightsFile && argv.weights ? { weightsFile, prunedModel: path.basename(argv.weights) } : {}),
      },
      weights,
    );
    writeTogether([
      ...(weights && weightsPath ? [{ file: weightsPath, chunks: weights.bytes }] : []),
      { file: out, chunks: [Buffer.from(text)] },
    ]);
    const sliced = spec.params.filter((p) => Object.keys(p.keep).length > 0).length;
    // The attentions apply() gives SlimMultiheadAttention: torch's attributes cannot say heads x dim != width.
    const replaced = spec.attention.filter((a) => a.kept.length * a.headDim !== a.embedDim).length;
    const files = [out, ...(weightsPath ? [weightsPath] : [])];
    if (argv.json) {
      console.log(
        JSON.stringify(
          {
            files,
            params: spec.params.length,
            slicedParams: sliced,
            modules: spec.modules.length,
            attention: spec.attention.length,
            replacedAttention: replaced,
          },
          null,
          1,
        ),
      );
      return;
    }
    console.log(
      `${sliced} of ${spec.params.length} parameters and buffers sliced, ${spec.modules.length} Conv/Linear/BatchNorm/Embedding modules resized`,
    );
    if (spec.attention.length)
      console.log(
        `${spec.attention.length} MultiheadAttention with new heads or width, ${replaced} of them become SlimMultiheadAttention (heads x head dim differs from the width)`,
      );
    console.log(`wrote ${files.join(', ')}`);
  },
};

function sameFile(a: string, b: string): boolean {
  if (path.resolve(a) === path.resolve(b)) return true;
  try {
    const sa = fs.statSync(a);
    const sb = fs.statSync(b);
    return sa.ino === sb.ino && sa.dev === sb.dev;
  } catch {
    return false;
  }
}

/** Every file complete on disk under a temporary name first, then all renamed: a failure leaves none behind. */
function writeTogether(files: { file: string; chunks: readonly Uint8Array[] }[]): void {
  const temps = files.map((f) => tempPathFor(f.file));
  try {
    files.forEach((f, i) => writeChunksSync(temps[i]!, f.chunks));
    files.forEach((f, i) => fs.renameSync(temps[i]!, f.file));
  } catch (e) {
    for (const t of temps) fs.rmSync(t, { force: true });
    throw new UserError(
      `cannot write: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      files.at(-1)!.file,
    );
  }
}
