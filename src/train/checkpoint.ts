import { UserError } from '../errors.js';
import { readRegularFile } from '../run-files.js';
import { writeFileAtomically } from '../atomic-write.js';

/** Everything a killed run needs to continue as if it had never stopped, at an epoch boundary. */
export interface TrainingState {
  /** Epochs finished. */
  epoch: number;
  step: number;
  /** Hash of the options that must not change across a resume (data, batch, seed, optimizer, schedule). */
  fingerprint: string;
  /** Hash of the starting model's weights: a checkpoint is refused for another model of the same shape. */
  modelHash: string;
  history: EpochRecord[];
  best: { epoch: number; accuracy: number } | undefined;
  /** Parameters, momentum buffers and BN running statistics by name; `best:`-prefixed copies of the best epoch. */
  tensors: Map<string, Float32Array>;
}

export interface EpochRecord {
  epoch: number;
  loss: number;
  trainAccuracy: number;
  valAccuracy?: number;
  lr: number;
  seconds: number;
  imagesPerSecond: number;
}

const MAGIC = 'ADAPRUNER-CKPT-1\n';

/** Writes the state to a temporary file in the same folder and renames it into place (atomic on POSIX). */
export function writeCheckpoint(file: string, state: TrainingState): void {
  const names = [...state.tensors.keys()];
  const header = JSON.stringify({
    epoch: state.epoch,
    step: state.step,
    fingerprint: state.fingerprint,
    modelHash: state.modelHash,
    history: state.history,
    best: state.best,
    tensors: names.map((n) => ({ name: n, length: state.tensors.get(n)!.length })),
  });
  const headerBytes = Buffer.from(`${MAGIC}${header}\n`);
  const pad = (4 - (headerBytes.length % 4)) % 4;
  const tensors = names.map((n) => {
    const a = state.tensors.get(n)!;
    return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  });
  writeFileAtomically(file, [headerBytes, Buffer.alloc(pad, 0x20), ...tensors]);
}

export function readCheckpoint(file: string): TrainingState {
  let bytes: Buffer;
  try {
    bytes = readRegularFile(file);
  } catch (e) {
    throw new UserError(
      `cannot read the checkpoint (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      file,
    );
  }
  const text = bytes.subarray(0, Math.min(bytes.length, 1 << 20)).toString('latin1');
  const end = text.indexOf('\n', MAGIC.length);
  if (!text.startsWith(MAGIC) || end < 0) throw new UserError('is not an adapruner checkpoint', file);
  let header: unknown;
  try {
    header = JSON.parse(text.slice(MAGIC.length, end));
  } catch {
    throw new UserError('the checkpoint header is damaged', file);
  }
  const h = checkHeader(header, file);
  let offset = end + 1;
  offset += (4 - (offset % 4)) % 4;
  const tensors = new Map<string, Float32Array>();
  for (const t of h.tensors) {
    if (offset + 4 * t.length > bytes.length) throw new UserError('the checkpoint is truncated', file);
    const copy = new Float32Array(t.length);
    new Uint8Array(copy.buffer).set(bytes.subarray(offset, offset + 4 * t.length));
    for (let i = 0; i < copy.length; i++)
      if (!Number.isFinite(copy[i]!))
        throw new UserError(`the checkpoint's tensor '${t.name}' holds a non-finite value`, file);
    tensors.set(t.name, copy);
    offset += 4 * t.length;
  }
  if (offset !== bytes.length) throw new UserError('the checkpoint has bytes past its last tensor', file);
  return {
    epoch: h.epoch,
    step: h.step,
    fingerprint: h.fingerprint,
    modelHash: h.modelHash,
    history: h.history,
    best: h.best,
    tensors,
  };
}

interface Header {
  epoch: number;
  step: number;
  fingerprint: string;
  modelHash: string;
  history: EpochRecord[];
  best: { epoch: number; accuracy: number } | undefined;
  tensors: { name: string; length: number }[];
}

/** The header's shape and types, so a damaged or forged checkpoint fails here with one line. */
function checkHeader(h: unknown, file: string): Header {
  const bad = (what: string): never => {
    throw new UserError(`the checkpoint header is damaged (${what})`, file);
  };
  if (typeof h !== 'object' || h === null || Array.isArray(h)) bad('not an object');
  const o = h as Record<string, unknown>;
  const count = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
  if (!count(o.epoch)) bad('epoch');
  if (!count(o.step)) bad('step');
  if (typeof o.fingerprint !== 'string') bad('fingerprint');
  // Checkpoints written before the hash was kept cannot show which model they belong to.
  if (typeof o.modelHash !== 'string') bad('no hash of the starting model; start the run afresh');
  if (
    !Array.isArray(o.history) ||
    !o.history.every((r) => typeof r === 'object' && r !== null && count((r as EpochRecord).epoch))
  )
    bad('history');
  if (
    o.best !== undefined &&
    (typeof o.best !== 'object' ||
      o.best === null ||
      !count((o.best as Record<string, unknown>).epoch) ||
      typeof (o.best as Record<string, unknown>).accuracy !== 'number')
  )
    bad('best');
  if (!Array.isArray(o.tensors)) bad('tensors');
  const names = new Set<string>();
  for (const t of o.tensors as unknown[]) {
    const e = t as Record<string, unknown>;
    if (
      typeof e !== 'object' ||
      e === null ||
      typeof e.name !== 'string' ||
      !count(e.length) ||
      e.length > 2 ** 29
    )
      bad('tensor list');
    if (names.has(e.name as string)) bad(`tensor '${String(e.name)}' listed twice`);
    names.add(e.name as string);
  }
  return o as unknown as Header;
}
