import { existsSync } from 'node:fs';
import { parseJsonText } from '../data/error-text.js';
import { UserError } from '../errors.js';
import { noteInput, readRegularFile } from '../run-files.js';
import { TASK_NAMES, type TaskName } from './types.js';

/** The two ways a detector's output may be laid out (ultralytics exports the first). */
export const BOX_LAYOUTS = ['[1,4+nc,N]', '[1,N,4+nc]'] as const;
export type BoxLayout = (typeof BOX_LAYOUTS)[number];

/**
 * What a model's output is, and how it is measured (`MODEL.layout.json` beside the model, or `--layout FILE`;
 * docs/tasks.md). Every field but `task` has a default; the defaults cover ultralytics detection exports and
 * torchvision segmentation models.
 */
export interface OutputLayout {
  task: TaskName;
  /** The output read; default the model's first. */
  output?: string;
  /** Class names, or their count (detect: default 4+nc from the output; segment: the channel count). */
  classes?: number | string[];
  /** detect: where the boxes run; default from the shape (the longer axis holds the boxes). */
  boxes?: BoxLayout;
  /** detect: candidate score threshold (default 0.001), NMS IoU (0.7), boxes per image (300). */
  conf?: number;
  iou?: number;
  maxDet?: number;
  /** detect: the original model's detections above this are the fidelity reference (default 0.25). */
  referenceConf?: number;
  /** segment: the mask value that marks pixels not scored (default 255). */
  ignoreIndex?: number;
  /** dense: applied to the output before thresholding and differences (default none). */
  activation?: 'none' | 'sigmoid';
  /** dense: foreground where the map is above this (default 0.5). */
  threshold?: number;
}

/** Where the layout came from, recorded with every result. */
export interface ResolvedLayout {
  layout: OutputLayout;
  source: string;
}

const KEYS = new Set([
  'task',
  'output',
  'classes',
  'boxes',
  'conf',
  'iou',
  'maxDet',
  'referenceConf',
  'ignoreIndex',
  'activation',
  'threshold',
]);

/** `resnet.onnx` → `resnet.layout.json`. */
export function layoutPathFor(modelPath: string): string {
  return modelPath.replace(/\.onnx$/i, '') + '.layout.json';
}

/** Reads and checks a layout file: unknown keys, wrong types and out-of-range numbers are one-line errors. */
export function readLayoutFile(path: string): Partial<OutputLayout> {
  let text: string;
  try {
    text = readRegularFile(path, 1 << 20).toString('utf8');
    noteInput(path, 'the output layout');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new UserError(`cannot read the output layout (${err.code ?? err.message})`, path);
  }
  const json = parseJsonText(text);
  if ('error' in json) throw new UserError(`cannot read the output layout (${json.error})`, path);
  const raw = json.value;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new UserError('an output layout must be a JSON object', path);
  const unknown = Object.keys(raw).filter((k) => !KEYS.has(k));
  if (unknown.length) throw new UserError(`unknown key(s) ${unknown.join(', ')} in the output layout`, path);
  checkLayoutFields(raw as Record<string, unknown>, path);
  return raw as Partial<OutputLayout>;
}

function checkLayoutFields(raw: Record<string, unknown>, path: string): void {
  const fail = (key: string, want: string) => {
    throw new UserError(`'${key}' in the output layout must be ${want}`, path);
  };
  const oneOf = (key: string, values: readonly string[]) => {
    if (raw[key] !== undefined && !values.includes(raw[key] as string))
      fail(key, `one of ${values.map((v) => `"${v}"`).join(', ')}`);
  };
  const fraction = (key: string) => {
    const v = raw[key];
    if (v !== undefined && !(typeof v === 'number' && v >= 0 && v <= 1)) fail(key, 'a number in [0, 1]');
  };
  oneOf('task', TASK_NAMES);
  oneOf('boxes', BOX_LAYOUTS);
  oneOf('activation', ['none', 'sigmoid']);
  ['conf', 'iou', 'referenceConf'].forEach(fraction);
  if (raw.threshold !== undefined && !(typeof raw.threshold === 'number' && Number.isFinite(raw.threshold)))
    fail('threshold', 'a finite number');
  if (raw.output !== undefined && typeof raw.output !== 'string') fail('output', 'an output name');
  const positiveInt = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v > 0;
  if (raw.maxDet !== undefined && !positiveInt(raw.maxDet)) fail('maxDet', 'a positive integer');
  if (
    raw.ignoreIndex !== undefined &&
    !(typeof raw.ignoreIndex === 'number' && Number.isInteger(raw.ignoreIndex) && raw.ignoreIndex >= 0)
  )
    fail('ignoreIndex', 'a non-negative integer');
  const c = raw.classes;
  if (
    c !== undefined &&
    !positiveInt(c) &&
    !(Array.isArray(c) && c.length > 0 && c.every((n) => typeof n === 'string'))
  )
    fail('classes', 'a positive integer or a list of class names');
}

/** An output as onnxruntime declares it: symbolic dims are strings. */
export interface DeclaredOutput {
  name: string;
  shape: readonly (number | string)[];
}

export interface LayoutRequest {
  /** `--task`: overrides the file's and the shape's. */
  task?: string;
  /** `--layout FILE`. */
  layoutFile?: string;
  /** `MODEL.layout.json` beside it is read when no file is named. */
  modelPath?: string;
  outputs: readonly DeclaredOutput[];
}

/**
 * The layout of a model: `--layout FILE`, else `MODEL.layout.json`, else defaults from the output's declared
 * shape (rank 2 classify, rank 3 detect, rank 4 segment, or dense with one channel); `--task` overrides the task.
 */
export function resolveLayout(request: LayoutRequest): ResolvedLayout {
  let fromFile: Partial<OutputLayout> = {};
  let source = 'defaults from the output shape';
  const file =
    request.layoutFile ??
    (request.modelPath !== undefined && existsSync(layoutPathFor(request.modelPath))
      ? layoutPathFor(request.modelPath)
      : undefined);
  if (file !== undefined) {
    fromFile = readLayoutFile(file);
    source = `file ${file}`;
  }
  if (request.task !== undefined && !(TASK_NAMES as readonly string[]).includes(request.task))
    throw new UserError(`--task must be one of ${TASK_NAMES.join(', ')}, not '${request.task}'`);
  const output = pickOutput(request.outputs, fromFile.output, file);
  const task =
    (request.task as TaskName | undefined) ?? fromFile.task ?? taskFromShape(output, request.modelPath);
  if (request.task !== undefined) source += ', --task';
  return { layout: { ...fromFile, task, output: output.name }, source };
}

function pickOutput(
  outputs: readonly DeclaredOutput[],
  name: string | undefined,
  file?: string,
): DeclaredOutput {
  if (outputs.length === 0) throw new UserError('the model has no outputs');
  if (name === undefined) return outputs[0]!;
  const found = outputs.find((o) => o.name === name);
  if (!found)
    throw new UserError(
      `the output layout names output '${name}', but the model's outputs are ${outputs.map((o) => o.name).join(', ')}`,
      file,
    );
  return found;
}

/** The task an output's declared shape suggests; a shape that suggests none needs --task or a layout file. */
export function taskFromShape(output: DeclaredOutput, modelPath?: string): TaskName {
  const { shape } = output;
  if (shape.length === 2) return 'classify';
  if (shape.length === 3) return 'detect';
  if (shape.length === 4 && shape[2] === 1 && shape[3] === 1) return 'classify'; // [N, classes, 1, 1]
  if (shape.length === 4) return shape[1] === 1 ? 'dense' : 'segment';
  throw new UserError(
    `cannot tell the task from output '${output.name}' of rank ${shape.length}; give --task or a layout file`,
    modelPath,
  );
}

/** The defaults every task reads, filled in. */
export function withDefaults(
  layout: OutputLayout,
): Required<Omit<OutputLayout, 'classes' | 'boxes' | 'output'>> & OutputLayout {
  return {
    conf: 0.001,
    iou: 0.7,
    maxDet: 300,
    referenceConf: 0.25,
    ignoreIndex: 255,
    activation: 'none',
    threshold: 0.5,
    ...layout,
  };
}

/** The class count a layout names, if any. */
export function layoutClassCount(layout: OutputLayout): number | undefined {
  const c = layout.classes;
  return c === undefined ? undefined : typeof c === 'number' ? c : c.length;
}
