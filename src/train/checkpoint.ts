import fs from 'node:fs';
import { UserError } from '../errors.js';
import { writeFileAtomically } from '../atomic-write.js';

/** Everything a killed run needs to continue as if it had never stopped, at an epoch boundary. */
export interface TrainingState {
  /** Epochs finished. */
  epoch: number;
  step: number;
  /** Hash of the options that must not change across a resume (data, batch, seed, optimizer, schedule). */
  fingerprint: string;
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
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new UserError(
      `cannot read the checkpoint (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      file,
    );
  }
  const text = bytes.subarray(0, Math.min(bytes.length, 1 << 20)).toString('latin1');
  const end = text.indexOf('\n', MAGIC.length);
  if (!text.startsWith(MAGIC) || end < 0) throw new UserError('is not an adapruner checkpoint', file);
  let header;
  try {
    header = JSON.parse(text.slice(MAGIC.length, end));
  } catch {
    throw new UserError('the checkpoint header is damaged', file);
  }
  let offset = end + 1;
  offset += (4 - (offset % 4)) % 4;
  const tensors = new Map<string, Float32Array>();
  for (const t of header.tensors as { name: string; length: number }[]) {
    if (offset + 4 * t.length > bytes.length) throw new UserError('the checkpoint is truncated', file);
    const copy = new Float32Array(t.length);
    new Uint8Array(copy.buffer).set(bytes.subarray(offset, offset + 4 * t.length));
    tensors.set(t.name, copy);
    offset += 4 * t.length;
  }
  return {
    epoch: header.epoch,
    step: header.step,
    fingerprint: header.fingerprint,
    history: header.history,
    best: header.best,
    tensors,
  };
}
