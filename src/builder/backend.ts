/**
 * Build backends. `build()` is backend-neutral: a backend describes the device it builds for and
 * times GEMM candidates; everything else (config resolution, weight layout, the engine file) is
 * shared. One backend exists today, `cuda` (libtrtb_engine: cuBLASLt + our kernels); a TensorRT
 * backend would implement the same interface and produce its own plan.
 */
import { TrtbError } from "../errors.ts";
import { type EngineDeviceInfo, engineLib, type GpuContext, type TuneProblem, type TuneResult } from "../ffi/engine.ts";
import type { PlanDevice } from "../engine/plan.ts";

export interface Backend {
  /** Recorded in the plan (`plan.backend`). */
  readonly name: string;
  /** The device tactics are chosen for (also the timing-cache key). */
  readonly device: PlanDevice;
  /** GPUs available to build on (caps `--workers`). */
  readonly deviceCount: number;
  /** Time every candidate for one GEMM problem; fastest first. */
  tune(p: TuneProblem): TuneResult[];
  close(): void;
}

/** The CUDA backend on `device`; `BUILD_NO_GPU` (naming what was looked for) when there is none. */
export function cudaBackend(device = 0): Backend {
  let info: EngineDeviceInfo;
  let ctx: GpuContext;
  let count: number;
  try {
    const lib = engineLib();
    count = lib.deviceCount();
    if (count === 0) throw new TrtbError("CUDA_NO_DEVICE", "the NVIDIA driver sees no CUDA device (check nvidia-smi and CUDA_VISIBLE_DEVICES)");
    if (device >= count) throw new TrtbError("CUDA_NO_DEVICE", `device ${device} does not exist (${count} visible)`);
    info = lib.deviceInfo(device);
    ctx = lib.createContext(device);
  } catch (e) {
    const why = e instanceof TrtbError ? e.message : String(e);
    throw new TrtbError(
      "BUILD_NO_GPU",
      `building an engine needs a CUDA GPU (the CUDA backend times its GEMMs on the device it builds for); looked for ` +
        `libtrtb_engine.so (with libcublasLt) and a CUDA device:\n${why}`,
      { cause: e },
    );
  }
  return {
    name: "cuda",
    device: { name: info.name, sm: `${info.major}.${info.minor}`, cublaslt_version: info.cublasLtVersion },
    deviceCount: count,
    tune: (p) => ctx.tune(p),
    close: () => ctx.destroy(),
  };
}

/**
 * A backend that times nothing and answers "cuBLASLt heuristic" for every problem. For tests of the
 * build pipeline on machines without a GPU (`TRTB_BUILD_BACKEND=fake`); engines it makes run
 * correctly on a GPU but are not tuned.
 */
export function fakeBackend(): Backend {
  return {
    name: "cuda",
    device: { name: "untuned (fake backend)", sm: "0.0", cublaslt_version: 0 },
    deviceCount: 8,
    tune: () => [{ kind: "heuristic", variant: 0, timeUs: 0, workspaceKb: 0 }],
    close: () => {},
  };
}

/** The backend the CLI and `build()` use by default: `TRTB_BUILD_BACKEND=fake` selects the fake one. */
export function defaultBackend(device = 0): Backend {
  return process.env.TRTB_BUILD_BACKEND === "fake" ? fakeBackend() : cudaBackend(device);
}
