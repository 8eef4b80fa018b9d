import type { Dataset } from '../data/dataset.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { UserError } from '../errors.js';
import type { DenseMaps } from './dense.js';
import type { TaskImageFolder } from './folder.js';
import { layoutClassCount, withDefaults, type OutputLayout } from './layout.js';
import {
  checkMaskValues,
  imageSize,
  inputGeometry,
  labelsToInput,
  planeToInput,
  readLabelPng,
  readYoloLabels,
  type InputGeometry,
} from './labels.js';
import type { TaskName } from './types.js';

/** What a label reader knows when it reads image `index`: the completed layout and the model input's size. */
export interface LabelContext {
  layout: OutputLayout;
  spec: PreprocessSpec;
  inputWidth: number;
  inputHeight: number;
  /** The model output's dims for this batch. */
  outputDims: readonly number[];
}

/** The labels of a data set, in the form the task's metric takes (model-input pixels). */
export interface TaskLabels {
  /** One line for reports: where the labels are and how many images have one. */
  readonly describe: string;
  /** Images without a label file (detect: counted as background). */
  readonly missing: number;
  load(index: number, context: LabelContext): Promise<unknown>;
}

/** The class labels of an ImageNet-layout (or CIFAR, IDX) data set. */
export function classLabels(dataset: Dataset): TaskLabels {
  return {
    describe: `class folders (${dataset.classNames.length} classes)`,
    missing: 0,
    load: async (index) => dataset.labels[index]!,
  };
}

/**
 * The label files of a task folder, or undefined when it has none at all (measure fidelity with --against
 * then). detect: an image without a label file is background (no boxes), as ultralytics counts it. segment and
 * dense: every image needs its mask; some with and some without is refused, naming the first without.
 */
export function folderLabels(folder: TaskImageFolder, task: TaskName): TaskLabels | undefined {
  const labelled = folder.labelledCount;
  if (labelled === 0) return undefined;
  const missing = folder.length - labelled;
  if (missing > 0 && task !== 'detect') {
    const first = folder.labelFiles.findIndex((f) => f === undefined);
    throw new UserError(
      `has no mask in ${folder.labelFolder} (the same name, .png); ${labelled} of ${folder.length} images have one: ` +
        'give every image its mask, or none and measure fidelity with --against',
      folder.describe(first),
    );
  }
  const describe =
    `${folder.labelFolder} (${labelled} of ${folder.length} images` +
    (missing > 0 ? `; ${missing} without a label file, counted as background)` : ')');
  return {
    describe,
    missing,
    load: async (index, context) => {
      const file = folder.labelFiles[index];
      const g = await geometryOf(folder.describe(index), context);
      if (task === 'detect') {
        const classes = layoutClassCount(context.layout)!;
        return file === undefined ? [] : labelsToInput(readYoloLabels(file, classes), g);
      }
      return readMaskOrMap(file!, task, context, g);
    },
  };
}

/** Identity without resizing (the input is the image), else the spec's geometry from the image's header. */
async function geometryOf(image: string, c: LabelContext): Promise<InputGeometry> {
  if (c.spec.resize === undefined && c.spec.crop === undefined)
    return {
      imageWidth: c.inputWidth,
      imageHeight: c.inputHeight,
      scaleX: 1,
      scaleY: 1,
      offsetX: 0,
      offsetY: 0,
      width: c.inputWidth,
      height: c.inputHeight,
    };
  const { width, height } = await imageSize(image);
  return inputGeometry(width, height, c.spec);
}

function readMaskOrMap(file: string, task: TaskName, context: LabelContext, g: InputGeometry): unknown {
  const png = readLabelPng(file);
  if (png.width !== g.imageWidth || png.height !== g.imageHeight)
    throw new UserError(
      `is ${png.width}x${png.height} but its image is ${g.imageWidth}x${g.imageHeight}; a mask has its image's size`,
      file,
    );
  const layout = withDefaults(context.layout);
  const [, channels, h, w] = context.outputDims as [number, number, number, number];
  if (h !== g.height || w !== g.width)
    throw new UserError(
      `is compared at the model input's ${g.width}x${g.height}, but the output '${layout.output}' is ${w}x${h}`,
      file,
    );
  if (task === 'dense' && channels !== 1)
    throw new UserError(`is one map, but the output '${layout.output}' has ${channels} channels`, file);
  if (task === 'segment') {
    checkMaskValues(png, layoutClassCount(layout)!, layout.ignoreIndex, file);
    const make = (n: number) => (png.data instanceof Uint16Array ? new Uint16Array(n) : new Uint8Array(n));
    return planeToInput(png.data, g, make, layout.ignoreIndex);
  }
  const scaled = Float32Array.from(png.data, (v) => v / png.maxValue);
  const plane = planeToInput(scaled, g, (n) => new Float32Array(n), NaN);
  const maps: DenseMaps = { data: plane.data, channels: 1, height: plane.height, width: plane.width };
  return maps;
}
