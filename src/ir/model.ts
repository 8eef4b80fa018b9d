import type { Graph } from './graph.js';
import { cloneModel } from './clone.js';
import type { LoadedFile } from './loaded-file.js';

export interface OpsetImport {
  domain: string;
  version: number;
  /** The file spelled out the empty default domain (kept so an unmodified model re-encodes byte for byte). */
  explicitDomain?: boolean;
}

/** A loaded model: the main graph plus the ModelProto fields around it. */
export class Model {
  irVersion = 8;
  opsetImports: OpsetImport[] = [];
  producerName: string | undefined;
  producerVersion: string | undefined;
  domain: string | undefined;
  modelVersion: number | undefined;
  docString: string | undefined;
  /** metadata_props in order; keys should be distinct. */
  metadata: { key: string; value: string }[] = [];
  /** ModelProto fields carried untouched: training_info, functions, configuration. */
  extra: Record<string, unknown> = {};
  /** The file it came from, for messages and for resolving external data. */
  sourcePath: string | undefined;
  /** The loaded file its weights view (loadModel), shared with clones: see releaseLoadedFile. */
  loadedFrom: LoadedFile | undefined;

  constructor(public graph: Graph) {}

  /** The version of the default ('' / 'ai.onnx') opset. */
  get opset(): number {
    return this.opsetImports.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version ?? 1;
  }

  /** A copy that shares weight bytes but no IR object with this model (see clone.ts). */
  clone(): Model {
    return cloneModel(this).model;
  }

  getMetadata(key: string): string | undefined {
    return this.metadata.find((m) => m.key === key)?.value;
  }

  setMetadata(key: string, value: string): void {
    const entry = this.metadata.find((m) => m.key === key);
    if (entry) entry.value = value;
    else this.metadata.push({ key, value });
  }
}
