export { batches, type Batch, type BatchOptions, type ImageBatch } from './batches.js';
export { cacheRoot, extractTarOnce } from './cache.js';
export { DEFAULT_DECODED_CACHE_BYTES } from './decoded-cache.js';
export { CifarBinaryDataset, type Split } from './cifar-binary.js';
export {
  describeDataset,
  hasLabels,
  requireLabels,
  type AnyDataset,
  type Dataset,
  type DatasetKind,
  type ImageSet,
  type Sample,
  type UnlabelledDataset,
} from './dataset.js';
export { decodeImageFile, resizeCropGeometry, transformSample } from './image.js';
export { ImageFolderDataset } from './image-folder.js';
export { UnlabelledImages } from './unlabelled.js';
export { IdxDataset, parseIdx, type IdxArray } from './idx.js';
export { openDataset, type OpenOptions } from './open.js';
export {
  PRESETS,
  PRESET_NAMES,
  normalisationTable,
  readSpecFile,
  resolveSpec,
  specPathFor,
  type AugmentSpec,
  type PreprocessSpec,
  type PresetName,
  type ResolvedSpec,
  type SpecRequest,
} from './preprocess.js';
export { mixSeed, mulberry32, shuffle, type Random } from './prng.js';
export { balancedSubset, holdoutSplit, shuffledIndices } from './subset.js';
