/**
 * Public surface of the native layer. The rest of the code imports from here only; nothing outside
 * `src/ffi/` sees a pointer or `bun:ffi`.
 *
 * - `nativeLib()`: the CPU library, or null when none loads. Callers then fall back to the
 *   TypeScript implementation (`src/numeric.ts`), which gives the same bits. That fallback is how
 *   a platform without a prebuilt library still works.
 * - `requireNative()`: the same, but throws `NATIVE_NOT_FOUND` listing every path tried.
 * - `cudaLib()`: the GPU library; throws `CUDA_UNAVAILABLE` (library or driver missing) or
 *   `CUDA_NO_DEVICE`.
 *
 * Loading happens once per process (see `lib.ts` for where the libraries are looked for and
 * `TRTB_DEBUG_FFI=1` to watch it).
 */
import { TrtbError } from "../errors.ts";
import { CudaLib, fmtVersion } from "./cuda.ts";
import { CPU_LIB, CUDA_LIB, debugFfi, describeAttempts, loadLibrary, platformTag } from "./lib.ts";
import { NativeLib } from "./native.ts";

export type { Cuda, DeviceProps } from "./cuda.ts";
export { DeviceBuffer, Stream } from "./cuda.ts";
export type { GemmIsa, GemmOptions, Native } from "./native.ts";

import type { Cuda } from "./cuda.ts";
import type { Native } from "./native.ts";

let native: { lib: Native | null; error?: TrtbError } | undefined;
let cuda: { lib?: Cuda; error?: TrtbError } | undefined;

function loadNative(): { lib: Native | null; error?: TrtbError } {
  const r = loadLibrary(CPU_LIB);
  if (r.ok) return { lib: new NativeLib(r.lib, r.path, r.abiVersion) };
  const explicit = process.env[CPU_LIB.env];
  const hint = explicit
    ? `${CPU_LIB.env} is set to ${explicit}; unset it or point it at a libtrtb built from this version`
    : `build it with \`bun run build\` (needs cmake and a C compiler), or set ${CPU_LIB.env}`;
  const error = new TrtbError(
    "NATIVE_NOT_FOUND",
    `native library ${CPU_LIB.file} for ${platformTag()} could not be loaded; tried:\n${describeAttempts(r.attempts)}\n${hint}`,
  );
  // An explicit path that fails is worth a warning even without TRTB_DEBUG_FFI.
  if (explicit) process.stderr.write(`warning: ${error.message}\n`);
  else debugFfi(`${CPU_LIB.file}: none loaded; the TypeScript fallback will be used`);
  return { lib: null, error };
}

/** The CPU library, or null when it cannot be loaded (reasons under `TRTB_DEBUG_FFI=1`). */
export function nativeLib(): Native | null {
  native ??= loadNative();
  return native.lib;
}

/** The CPU library; throws `TrtbError` `NATIVE_NOT_FOUND` listing the candidates tried. */
export function requireNative(): Native {
  native ??= loadNative();
  if (native.lib) return native.lib;
  throw native.error!;
}

function loadCuda(): { lib?: Cuda; error?: TrtbError } {
  const r = loadLibrary(CUDA_LIB);
  if (!r.ok)
    return {
      error: new TrtbError(
        "CUDA_UNAVAILABLE",
        `CUDA library ${CUDA_LIB.file} for ${platformTag()} could not be loaded; tried:\n${describeAttempts(r.attempts)}\n` +
          `build it on a machine with the CUDA toolkit (\`bun run build\`), or set ${CUDA_LIB.env}`,
      ),
    };
  const lib = new CudaLib(r.lib, r.path, r.abiVersion);
  try {
    const n = lib.probe();
    debugFfi(`${CUDA_LIB.file}: ${n} device(s), runtime ${fmtVersion(lib.runtimeVersion)}, driver ${fmtVersion(lib.driverVersion)}`);
    return { lib };
  } catch (e) {
    // Keep the library loaded (it is harmless) but report why it is unusable, every time.
    return { error: e instanceof TrtbError ? e : new TrtbError("CUDA_ERROR", String(e), { cause: e }) };
  }
}

/**
 * The GPU library, ready to use. Throws `TrtbError` `CUDA_UNAVAILABLE` when libtrtb_cuda or the
 * NVIDIA driver is missing, `CUDA_NO_DEVICE` when no GPU is visible. The outcome is cached.
 */
export function cudaLib(): Cuda {
  cuda ??= loadCuda();
  if (cuda.lib) return cuda.lib;
  throw cuda.error!;
}
