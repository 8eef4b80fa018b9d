import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { UserError } from '../errors.js';

export type Device = 'cpu' | 'cuda' | 'auto';
export const DEVICES: readonly Device[] = ['cpu', 'cuda', 'auto'];

/**
 * How to get the CUDA execution provider. onnxruntime-node does not ship it in the npm package; its install
 * script downloads it (from NuGet) unless told to skip, and this project's .npmrc skips it so that installs
 * work offline and without CUDA.
 */
export const CUDA_INSTALL_HINT =
  'install it with `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` ' +
  '(on Linux x64 with internet access; the environment variable overrides the onnxruntime-node-install=skip in .npmrc), ' +
  'and make CUDA 12 and cuDNN 9 libraries loadable (e.g. on LD_LIBRARY_PATH)';

/** The folder of onnxruntime-node's native libraries for this platform. */
export function onnxruntimeBinaryFolder(): string {
  const require = createRequire(import.meta.url);
  const entry = require.resolve('onnxruntime-node'); // …/onnxruntime-node/dist/index.js
  return join(dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch);
}

/** Why CUDA cannot be used, or undefined when its provider library is installed (it may still fail to load). */
export function cudaUnavailableReason(): string | undefined {
  if (process.platform !== 'linux' && process.platform !== 'win32')
    return `onnxruntime-node has no CUDA provider on ${process.platform}`;
  const library =
    process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
  const path = join(onnxruntimeBinaryFolder(), library);
  return existsSync(path) ? undefined : `the CUDA execution provider is not installed (${path} is missing)`;
}

/** Fails with install instructions unless the CUDA provider is installed. */
export function requireCuda(): void {
  const reason = cudaUnavailableReason();
  if (reason) throw new UserError(`--device cuda: ${reason}; ${CUDA_INSTALL_HINT}`);
}

export function parseDevice(value: string): Device {
  if (!(DEVICES as readonly string[]).includes(value)) {
    throw new UserError(`unknown device '${value}' (use ${DEVICES.join(', ')})`);
  }
  return value as Device;
}
