import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { UserError } from '../errors.js';
import type { ByteSource, Tensor } from './tensor.js';

/** What identifies one version of a file: a write in place changes ctime (and usually size and mtime). */
interface FileIdentity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export function fileIdentity(st: fs.BigIntStats): FileIdentity {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return (
    a.dev === b.dev &&
    a.ino === b.ino &&
    a.size === b.size &&
    a.mtimeNs === b.mtimeNs &&
    a.ctimeNs === b.ctimeNs
  );
}

/**
 * The buffer a model file was loaded into, which every large raw_data of the model views (zero-copy load), and
 * the tensors that view it (clones included). `release()` lets the buffer go: each tensor still viewing it
 * reads its bytes back from the file when next needed, after checking that the file is still the one loaded.
 * A prune holds the file only until the pruned model is built; validation and save then run without it.
 */
export class LoadedFile implements ByteSource {
  private buffer: Uint8Array | undefined;
  private tensors: WeakRef<Tensor>[] = [];
  private trimAt = 1024;

  constructor(
    readonly path: string,
    buffer: Uint8Array,
    private readonly identity: FileIdentity | undefined,
  ) {
    this.buffer = buffer;
  }

  /** Whether the buffer is still held. */
  get held(): boolean {
    return this.buffer !== undefined;
  }

  track(t: Tensor): void {
    this.tensors.push(new WeakRef(t));
    if (this.tensors.length >= this.trimAt) {
      this.tensors = this.tensors.filter((r) => r.deref() !== undefined);
      this.trimAt = Math.max(1024, 2 * this.tensors.length);
    }
  }

  /** Where `bytes` start in the file, when they are a view of the loaded buffer. */
  private offsetOf = (bytes: Uint8Array): number | undefined => {
    const b = this.buffer;
    if (!b || bytes.buffer !== b.buffer) return undefined;
    const offset = bytes.byteOffset - b.byteOffset;
    return offset >= 0 && offset + bytes.byteLength <= b.byteLength ? offset : undefined;
  };

  /**
   * Detaches every tracked tensor from the buffer and drops it; returns the bytes the tensors no longer view.
   * Without a file identity (the file changed while it was read) nothing is released.
   */
  release(): number {
    if (!this.buffer || !this.identity) return 0;
    let released = 0;
    for (const ref of this.tensors) released += ref.deref()?.detachFromFile(this.offsetOf) ?? 0;
    this.tensors = [];
    this.buffer = undefined;
    return released;
  }

  read(offset: number, length: number, tensorName: string): Uint8Array {
    if (this.buffer) return this.buffer.subarray(offset, offset + length);
    const changed = (): UserError =>
      new UserError(
        `the file changed after it was loaded (tensor '${tensorName}' is read from it again); run the command again`,
        this.path,
      );
    let fd: number;
    try {
      fd = fs.openSync(this.path, fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0));
    } catch {
      throw changed();
    }
    try {
      if (!sameIdentity(fileIdentity(fs.fstatSync(fd, { bigint: true })), this.identity!)) throw changed();
      const out = Buffer.allocUnsafeSlow(length);
      let done = 0;
      while (done < length) {
        const n = fs.readSync(fd, out, done, Math.min(length - done, 1 << 30), offset + done);
        if (n === 0) throw changed();
        done += n;
      }
      return new Uint8Array(out.buffer, out.byteOffset, length);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/**
 * Lets go of the file `model` was loaded from (see LoadedFile) and runs one full garbage collection when that
 * freed much: V8 returns an ArrayBuffer's memory only when a full collection finds it dead, and nothing in what
 * follows a rewrite (a few large allocations, then onnxruntime's native ones, which V8 does not see) makes one
 * run soon. Returns the bytes released. The model's data is unchanged; it is read back when used.
 */
export function releaseLoadedFile(model: { loadedFrom?: LoadedFile }, minBytesForGc = 16 << 20): number {
  const released = model.loadedFrom?.release() ?? 0;
  if (released >= minBytesForGc) collectGarbage();
  return released;
}

export function collectGarbage(): void {
  try {
    const g = globalThis as { gc?: () => void };
    if (!g.gc) v8.setFlagsFromString('--expose-gc');
    (g.gc ?? (vm.runInNewContext('gc') as () => void))();
  } catch {
    // best effort: only the peak memory depends on it
  }
}
