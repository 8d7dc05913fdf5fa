/**
 * libtrtb_engine behind a typed surface: `engineLib()` (the loaded library, cached), a
 * `GpuContext` per device (stream, cuBLASLt, staging buffers, GEMM tactics), owning classes for
 * device and pinned host memory, and `Program`, the one writer of op programs.
 *
 * Nothing outside `src/ffi/` sees a pointer: device memory is a `DeviceMem` and places in it are
 * `DevRef`s (memory + byte offset); pinned host memory is a `PinnedHost` with typed views. Programs
 * take refs and turn them into addresses inside `src/ffi/` (`engine-program.ts`).
 *
 * Ownership as in `cuda.ts`: `destroy()` (or `using`) frees; a use after that throws
 * `NATIVE_DESTROYED`; a `FinalizationRegistry` frees what was dropped, as a backstop only.
 *
 * This file loads the library (`engineLib`, `EngineLib`, device info) and is the one import path
 * for the rest: memory handles in `engine-mem.ts`, the context in `engine-context.ts`, the program
 * encoder in `engine-program.ts`.
 */
import type { Library } from "bun:ffi";
import { TrtbError } from "../errors.ts";
import { type Checker, makeChecker } from "./check.ts";
import { GpuContext, intArg, type Syms } from "./engine-context.ts";
import { DEVICE_INFO, ENGINE_INTERFACE_VERSION, type EngineSymbols } from "./engine-symbols.ts";
import { describeAttempts, ENGINE_LIB, loadLibrary, platformTag } from "./lib.ts";

export { type EngineContext, GpuContext, type Tactic, type TacticKind, type TuneProblem, type TuneResult } from "./engine-context.ts";
export { DeviceMem, DevRef, Graph, HostRef, PinnedHost, refAddress } from "./engine-mem.ts";
export { type Dt, type KvDt, Program, SAMPLE_PARAMS_BYTES, writeSampleParams } from "./engine-program.ts";

export interface EngineDeviceInfo {
  readonly name: string;
  readonly major: number;
  readonly minor: number;
  readonly multiprocessors: number;
  readonly totalMemory: number;
  readonly freeMemory: number;
  readonly l2Bytes: number;
  readonly smemOptin: number;
  readonly cublasLtVersion: number;
}

// ---- library ----------------------------------------------------------------------------------

let loaded: { lib?: EngineLib; error?: TrtbError } | undefined;

/**
 * The engine library, loaded once. Throws `TrtbError` `ENGINE_UNAVAILABLE` listing every path
 * tried when libtrtb_engine (or a library it needs, such as libcublasLt) cannot be loaded.
 */
export function engineLib(): EngineLib {
  loaded ??= loadEngine();
  if (loaded.lib) return loaded.lib;
  throw loaded.error!;
}

function loadEngine(): { lib?: EngineLib; error?: TrtbError } {
  const r = loadLibrary(ENGINE_LIB);
  if (!r.ok)
    return {
      error: new TrtbError(
        "ENGINE_UNAVAILABLE",
        `engine library ${ENGINE_LIB.file} for ${platformTag()} could not be loaded; tried:\n${describeAttempts(r.attempts)}\n` +
          `build it on a machine with the CUDA toolkit and cuBLASLt (\`bun run build\`), or set ${ENGINE_LIB.env}`,
      ),
    };
  const v = r.lib.symbols.trtb_engine_interface_version();
  if (v !== ENGINE_INTERFACE_VERSION) {
    r.lib.close();
    return {
      error: new TrtbError("ENGINE_UNAVAILABLE", `${r.path}: engine interface version ${v}, expected ${ENGINE_INTERFACE_VERSION} (rebuild it: bun run build)`),
    };
  }
  return { lib: new EngineLib(r.lib, r.path) };
}

export class EngineLib {
  readonly #s: Syms;
  readonly #check: Checker;
  readonly #i32 = new Int32Array(1);
  readonly #u64 = new BigUint64Array(1);

  constructor(lib: Library<EngineSymbols>, readonly path: string) {
    const s = (this.#s = lib.symbols);
    this.#check = makeChecker({ lastError: (b, n) => s.trtb_engine_last_error(b, n), statusStr: (st) => s.trtb_engine_status_str(st) });
  }

  /** Visible devices (0 when there are none; throws CUDA_UNAVAILABLE without a driver). */
  deviceCount(): number {
    this.#check(this.#s.trtb_engine_device_count(this.#i32));
    return this.#i32[0]!;
  }

  deviceInfo(device = 0): EngineDeviceInfo {
    const buf = new Uint8Array(DEVICE_INFO.size);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, DEVICE_INFO.size, true);
    this.#check(this.#s.trtb_engine_device_info_get(intArg("device", device), buf));
    const nameBytes = buf.subarray(DEVICE_INFO.name, DEVICE_INFO.name + DEVICE_INFO.nameLength);
    const nul = nameBytes.indexOf(0);
    return {
      name: new TextDecoder().decode(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes),
      major: dv.getInt32(DEVICE_INFO.major, true),
      minor: dv.getInt32(DEVICE_INFO.minor, true),
      multiprocessors: dv.getInt32(DEVICE_INFO.multiprocessors, true),
      totalMemory: Number(dv.getBigUint64(DEVICE_INFO.totalMemory, true)),
      freeMemory: Number(dv.getBigUint64(DEVICE_INFO.freeMemory, true)),
      l2Bytes: Number(dv.getBigUint64(DEVICE_INFO.l2, true)),
      smemOptin: dv.getInt32(DEVICE_INFO.smemOptin, true),
      cublasLtVersion: dv.getInt32(DEVICE_INFO.cublasLtVersion, true),
    };
  }

  /** A context on `device` (stream, cuBLASLt handle + workspace). Destroy it when done. */
  createContext(device = 0, workspaceBytes = 0): GpuContext {
    this.#check(this.#s.trtb_engine_ctx_create(intArg("device", device), workspaceBytes, this.#u64));
    return new GpuContext(this.#s, this.#check, Number(this.#u64[0]), device);
  }
}
