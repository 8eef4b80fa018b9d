import { parseJsonText } from './error-text.js';
import { existsSync } from 'node:fs';
import { noteInput, readRegularFile } from '../run-files.js';
import { UserError } from '../errors.js';

/**
 * How images become model input. The output is always NCHW float32; per value
 * `x = (u8 / scale - mean[c]) / std[c]`, rounded to float32 after every step so that the result is
 * bit-identical to torchvision's `ToTensor()` + `Normalize()` (see ../shared/models/README.md).
 */
export interface PreprocessSpec {
  /** Channels of the model input: 3 = colour, 1 = grayscale. */
  channels: 1 | 3;
  /** Order of the colour channels in the tensor (ignored for 1 channel). */
  channelOrder: 'rgb' | 'bgr';
  /**
   * A number: resize so the shorter side has this many pixels (bilinear), before cropping. `letterbox`: scale to
   * fit `size` keeping the aspect ratio and pad the rest with 114, centred (ultralytics' LetterBox); `stretch`:
   * scale to `size` exactly. Absent: native size.
   */
  resize?: number | FitMode;
  /**
   * [height, width] that `letterbox` and `stretch` fit to; normally left out and taken from the model's input
   * shape (specForInput).
   */
  size?: [number, number];
  /** Center crop to crop x crop pixels, after resizing. */
  crop?: number;
  /** Pixel values are divided by this first; 255 maps 8-bit values onto [0, 1]. */
  scale: number;
  mean: number[];
  std: number[];
  /** Training augmentation, applied only where a caller asks for it (never by eval). */
  augment?: AugmentSpec;
}

/** Resizing to the model's input height and width (the target `size`). */
export const FIT_MODES = ['letterbox', 'stretch'] as const;
export type FitMode = (typeof FIT_MODES)[number];

/** ultralytics' letterbox padding, on the 0-255 scale. */
export const LETTERBOX_PAD = 114;

/** torchvision's RandomCrop(size, padding) + RandomHorizontalFlip(), in that order. */
export interface AugmentSpec {
  /** Zero-pad every side by this many pixels, then crop back to the original size at a random offset. */
  cropPadding?: number;
  horizontalFlip?: boolean;
}

/** How much of the spec's training augmentation a run applies: all of it, the flip alone, or none. */
export const AUGMENTATIONS = ['full', 'flip', 'none'] as const;
export type Augmentation = (typeof AUGMENTATIONS)[number];

/**
 * The spec's augmentation at a level. `flip` drops the padded crop: its zero borders never occur in test images,
 * and a short fine-tuning of a pretrained network has no time to profit from the translations (ResNet-56 at 50%
 * MACs, 2 epochs on the JPEG CIFAR-10 copy: padding 4 87.71%, padding 2 88.25%, flip alone 88.51%).
 */
export function augmentationAt(spec: PreprocessSpec, level: Augmentation): AugmentSpec | undefined {
  if (level === 'none' || !spec.augment) return undefined;
  if (level === 'full') return spec.augment;
  return spec.augment.horizontalFlip ? { horizontalFlip: true } : undefined;
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

export const PRESETS = {
  /** The recipe the shared CIFAR-10 ResNets were trained with (ImageNet mean/std, no resize). */
  cifar10: {
    channels: 3,
    channelOrder: 'rgb',
    scale: 255,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    augment: { cropPadding: 4, horizontalFlip: true },
  },
  /** The CIFAR-100 training-set statistics commonly used with CIFAR-100 models. */
  cifar100: {
    channels: 3,
    channelOrder: 'rgb',
    scale: 255,
    mean: [0.5071, 0.4865, 0.4409],
    std: [0.2673, 0.2564, 0.2762],
    augment: { cropPadding: 4, horizontalFlip: true },
  },
  imagenet: {
    channels: 3,
    channelOrder: 'rgb',
    resize: 256,
    crop: 224,
    scale: 255,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    augment: { horizontalFlip: true },
  },
  fmnist: {
    channels: 1,
    channelOrder: 'rgb',
    scale: 255,
    mean: [0.286],
    std: [0.353],
    augment: { cropPadding: 2, horizontalFlip: true },
  },
  /** Digits must not be mirrored, so no flip. */
  mnist: {
    channels: 1,
    channelOrder: 'rgb',
    scale: 255,
    mean: [0.1307],
    std: [0.3081],
    augment: { cropPadding: 2 },
  },
  /** ultralytics YOLO (v5/v8/11): RGB, [0, 1], letterboxed to the model's input with grey 114. */
  yolo: {
    channels: 3,
    channelOrder: 'rgb',
    resize: 'letterbox',
    scale: 255,
    mean: [0, 0, 0],
    std: [1, 1, 1],
  },
} satisfies Record<string, PreprocessSpec>;

export type PresetName = keyof typeof PRESETS;
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

/** Where a spec came from, recorded next to every result. */
export interface ResolvedSpec {
  spec: PreprocessSpec;
  source: string;
}

export interface SpecRequest {
  preset?: string;
  /** A spec JSON file named explicitly. */
  specFile?: string;
  /** The model being run: `MODEL.preprocess.json` beside it is used when no preset or file is named. */
  modelPath?: string;
  /** Flags override single fields of whatever the base is. */
  mean?: number[];
  std?: number[];
  resize?: number;
  crop?: number;
  channels?: number;
  /** The command has --mean and --std, so the error advice may name them (eval has; prune and finetune not). */
  meanStdFlags?: boolean;
}

/** The JSON spec file that travels with a model: `resnet.onnx` → `resnet.preprocess.json`. */
export function specPathFor(modelPath: string): string {
  return modelPath.replace(/\.onnx$/i, '') + '.preprocess.json';
}

/**
 * Combines a preset, a spec file or the model's `.preprocess.json` with flag overrides. Refuses to guess:
 * with no source at all a wrong normalisation would silently cost accuracy.
 */
export function resolveSpec(request: SpecRequest): ResolvedSpec {
  let base: PreprocessSpec | undefined;
  let source: string;
  if (request.preset !== undefined) {
    const preset = (PRESETS as Record<string, PreprocessSpec>)[request.preset];
    if (!preset)
      throw new UserError(`unknown preset '${request.preset}' (known: ${PRESET_NAMES.join(', ')})`);
    base = structuredClone(preset);
    source = `preset ${request.preset}`;
  } else if (request.specFile !== undefined) {
    base = readSpecFile(request.specFile);
    source = `file ${request.specFile}`;
  } else if (request.modelPath !== undefined && existsSync(specPathFor(request.modelPath))) {
    base = readSpecFile(specPathFor(request.modelPath));
    source = `file ${specPathFor(request.modelPath)}`;
  } else if (request.mean !== undefined && request.std !== undefined) {
    const channels = request.mean.length === 1 ? 1 : 3;
    base = { channels, channelOrder: 'rgb', scale: 255, mean: request.mean, std: request.std };
    source = 'flags';
  } else {
    const beside = request.modelPath ? `, or write ${specPathFor(request.modelPath)}` : '';
    throw new UserError(
      `say how to preprocess the images: --preset ${PRESET_NAMES.join('|')}, --spec FILE${request.meanStdFlags ? ', or --mean and --std' : ''}${beside}`,
    );
  }
  const overridden = applyOverrides(base, request);
  if (overridden !== base) source += ' with flag overrides';
  validateSpec(overridden, source);
  return { spec: overridden, source };
}

function applyOverrides(base: PreprocessSpec, request: SpecRequest): PreprocessSpec {
  const fields = ['mean', 'std', 'resize', 'crop', 'channels'] as const;
  if (fields.every((f) => request[f] === undefined)) return base;
  const spec = { ...base };
  if (request.channels !== undefined) spec.channels = request.channels as 1 | 3;
  if (request.mean !== undefined) spec.mean = request.mean;
  if (request.std !== undefined) spec.std = request.std;
  if (request.resize !== undefined) spec.resize = request.resize;
  if (request.crop !== undefined) spec.crop = request.crop;
  return spec;
}

const SPEC_KEYS = new Set([
  'channels',
  'channelOrder',
  'resize',
  'size',
  'crop',
  'scale',
  'mean',
  'std',
  'augment',
]);

/** Reads a spec JSON file (the format of `PreprocessSpec`; `channelOrder` and `scale` may be left out). */
export function readSpecFile(path: string): PreprocessSpec {
  let text: string;
  try {
    text = readRegularFile(path, 1 << 20).toString('utf8');
    noteInput(path, 'the preprocessing spec');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new UserError(`cannot read the preprocessing spec (${err.code ?? err.message})`, path);
  }
  // The position only, never the text: the parser's message quotes it, and the file may be any file.
  const json = parseJsonText(text);
  if ('error' in json) throw new UserError(`cannot read the preprocessing spec (${json.error})`, path);
  const parsed = json.value;
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UserError('a preprocessing spec must be a JSON object', path);
  }
  const unknown = Object.keys(parsed).filter((k) => !SPEC_KEYS.has(k));
  if (unknown.length)
    throw new UserError(`unknown key(s) ${unknown.join(', ')} in the preprocessing spec`, path);
  const raw = parsed as Partial<PreprocessSpec>;
  const mean = raw.mean ?? [];
  const spec: PreprocessSpec = {
    channels: raw.channels ?? (mean.length === 1 ? 1 : 3),
    channelOrder: raw.channelOrder ?? 'rgb',
    scale: raw.scale ?? 255,
    mean,
    std: raw.std ?? [],
    ...(raw.resize !== undefined && { resize: raw.resize }),
    ...(raw.size !== undefined && { size: raw.size }),
    ...(raw.crop !== undefined && { crop: raw.crop }),
    ...(raw.augment !== undefined && { augment: raw.augment }),
  };
  validateSpec(spec, `file ${path}`);
  return spec;
}

function validateSpec(spec: PreprocessSpec, source: string): void {
  const fail = (why: string) => {
    throw new UserError(`invalid preprocessing spec (${source}): ${why}`);
  };
  if (spec.channels !== 1 && spec.channels !== 3) fail(`channels must be 1 or 3, not ${spec.channels}`);
  if (spec.channelOrder !== 'rgb' && spec.channelOrder !== 'bgr') fail(`channelOrder must be 'rgb' or 'bgr'`);
  for (const key of ['mean', 'std'] as const) {
    const values = spec[key];
    if (!Array.isArray(values) || values.some((v) => typeof v !== 'number' || !Number.isFinite(v))) {
      fail(`${key} must be a list of numbers`);
    }
    if (values.length !== spec.channels)
      fail(`${key} has ${values.length} values for ${spec.channels} channel(s)`);
  }
  if (spec.std.some((s) => s <= 0)) fail('std values must be positive');
  if (!(spec.scale > 0)) fail('scale must be positive');
  const { resize, size, crop } = spec;
  const fits = typeof resize === 'string';
  if (fits && !(FIT_MODES as readonly string[]).includes(resize))
    fail(`resize must be a positive integer, 'letterbox' or 'stretch'`);
  if (resize !== undefined && !fits && !(Number.isInteger(resize) && resize > 0))
    fail(`resize must be a positive integer, 'letterbox' or 'stretch'`);
  if (crop !== undefined && !(Number.isInteger(crop) && crop > 0)) fail('crop must be a positive integer');
  if (fits && crop !== undefined)
    fail(`crop does not combine with resize '${resize}' (it fits the whole input)`);
  if (size !== undefined) {
    if (!fits) fail(`size applies to resize 'letterbox' or 'stretch' only`);
    if (!Array.isArray(size) || size.length !== 2 || !size.every((v) => Number.isInteger(v) && v > 0))
      fail('size must be [height, width] in pixels');
  }
  const padding = spec.augment?.cropPadding;
  if (padding !== undefined && !(Number.isInteger(padding) && padding >= 0)) {
    fail('augment.cropPadding must be a non-negative integer');
  }
}

/**
 * The spec with the target `size` of `letterbox`/`stretch` taken from the model's image input dims [N, C, H, W]
 * (with `--input-shape` applied); unchanged when it resizes otherwise or names its size. A model that leaves
 * H or W open needs `--input-shape`.
 */
export function specForInput(
  spec: PreprocessSpec,
  dims: readonly (number | string | null)[] | undefined,
  file?: string,
): PreprocessSpec {
  const [h, w] = [dims?.[2], dims?.[3]];
  checkFixedSize(spec, h, w, file);
  if (typeof spec.resize !== 'string' || spec.size !== undefined) return spec;
  if (dims?.length !== 4 || typeof h !== 'number' || typeof w !== 'number' || h <= 0 || w <= 0)
    throw new UserError(
      `resize '${spec.resize}' fits images to the model's input height and width, which it leaves open: give --input-shape 1x${spec.channels}xHxW (or size [H, W] in the spec)`,
      file,
    );
  return { ...spec, size: [h, w] };
}

/**
 * A spec that makes images of a fixed size (a centre crop, or a fit to an explicit size) must make the size
 * the model takes, or every batch would fail inside onnxruntime: say so before any image is read.
 */
function checkFixedSize(spec: PreprocessSpec, h: unknown, w: unknown, file: string | undefined): void {
  if (typeof h !== 'number' || typeof w !== 'number') return;
  const fixed: [number, number] | undefined =
    spec.crop !== undefined
      ? [spec.crop, spec.crop]
      : typeof spec.resize === 'string' && spec.size
        ? spec.size
        : undefined;
  if (fixed && (fixed[0] !== h || fixed[1] !== w))
    throw new UserError(
      `the preprocessing makes ${fixed[0]}x${fixed[1]} images, but the model's input is ${h}x${w}: use a --spec or --preset that makes ${h}x${w} images`,
      file,
    );
}

/**
 * The float32 value of every (channel, 8-bit value) pair: normalising is then one table read per value.
 * Each step is rounded to float32 as torch computes it, so the table is bit-identical to torch.
 */
export function normalisationTable(spec: PreprocessSpec): Float32Array {
  const table = new Float32Array(spec.channels * 256);
  const scale = Math.fround(spec.scale);
  for (let c = 0; c < spec.channels; c++) {
    const mean = Math.fround(spec.mean[c]!);
    const std = Math.fround(spec.std[c]!);
    for (let v = 0; v < 256; v++) {
      table[c * 256 + v] = Math.fround(Math.fround(Math.fround(v / scale) - mean) / std);
    }
  }
  return table;
}
