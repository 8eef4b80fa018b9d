export {
  AttributeType,
  intAttr,
  intsAttr,
  floatAttr,
  floatsAttr,
  stringAttr,
  tensorAttr,
} from './attribute.js';
export type { Attribute, AttributeValue, Int } from './attribute.js';
export { DataType, dataTypeName, ortTypeName, type TypedArray } from './data-type.js';
export { Graph, Node, Value, intToNumber, type Use } from './graph.js';
export { loadModel, decodeModel, type LoadOptions } from './load.js';
export { Model, type OpsetImport } from './model.js';
export { LoadedFile, releaseLoadedFile, collectGarbage } from './loaded-file.js';
export { saveModel, serializeModel, serializeModelCompact, type SaveOptions } from './save.js';
export { Tensor } from './tensor.js';
export { tensorType, shapeToString, staticSize, type Dim, type ValueType } from './types.js';
export { verifyModel, assertValid } from './verify.js';
export { constantOf, constantSource, type ConstantSource } from './constant.js';
export { cloneModel, type CloneResult } from './clone.js';
