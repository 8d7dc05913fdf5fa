/**
 * Where the quantization kernel runs: libtrtb's threaded CPU kernel, the TypeScript reference when
 * no native library loads (same bits, much slower), or libtrtb_cuda (host buffers go up, the packed
 * result and scales come back). All three give identical bytes; tests hold them to that.
 */
import type { DType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import { type Cuda, cudaLib, type DeviceBuffer, nativeLib } from "../ffi/index.ts";
import { log } from "../log.ts";
import { dequantizeTS, isFloatDType, type QuantKernelParams, quantizeTS } from "./kernel.ts";

export type QuantDevice = "cpu" | "cuda";

export interface QuantBackend {
  /** "native" (libtrtb), "ts" (TypeScript reference) or "cuda". */
  readonly name: "native" | "ts" | "cuda";
  /** Quantize host `src` into host `dst` and `scales` (see `src/quant/kernel.ts`). */
  quantize(p: QuantKernelParams, src: Uint8Array, dst: Uint8Array, scales: Uint8Array): void;
  /** Dequantize into host `dst` of `dtype` (F32, F16 or BF16). */
  dequantize(p: QuantKernelParams, q: Uint8Array, scales: Uint8Array, dst: Uint8Array, dtype: DType): void;
  /** Release device memory (CUDA); a no-op elsewhere. */
  close(): void;
}

const tsBackend: QuantBackend = {
  name: "ts",
  quantize: quantizeTS,
  dequantize(p, q, scales, dst, dtype) {
    if (!isFloatDType(dtype)) throw new TrtbError("QUANT_PARAMS", `dequantize: ${dtype} is not F32, F16 or BF16`);
    dequantizeTS(p, q, scales, dst, dtype);
  },
  close() {},
};

/** Below this many source bytes the TypeScript loop is as fast as an FFI call. */
const NATIVE_MIN_BYTES = 4096;

/** The CPU backend: libtrtb when it loads, else the TypeScript reference. */
export function cpuQuantBackend(): QuantBackend {
  const n = nativeLib();
  if (!n) return tsBackend;
  return {
    name: "native",
    quantize: (p, src, dst, scales) => (src.byteLength < NATIVE_MIN_BYTES ? tsBackend.quantize(p, src, dst, scales) : n.quantize(p, src, dst, scales)),
    dequantize: (p, q, scales, dst, dtype) => n.dequantize(p, q, scales, dst, dtype),
    close() {},
  };
}

/** The TypeScript reference, whatever is loaded (tests, debugging). */
export function tsQuantBackend(): QuantBackend {
  return tsBackend;
}

/**
 * The GPU backend: one growing set of device buffers reused across tensors; each call uploads the
 * source, runs the kernel and downloads the results on one stream. Throws `CUDA_UNAVAILABLE` /
 * `CUDA_NO_DEVICE` up front when there is no usable GPU.
 */
export function cudaQuantBackend(device = 0): QuantBackend {
  const cuda: Cuda = cudaLib();
  const stream = cuda.createStream(device);
  const bufs: Record<"a" | "b" | "s", DeviceBuffer | null> = { a: null, b: null, s: null };
  const take = (k: "a" | "b" | "s", bytes: number): DeviceBuffer => {
    let b = bufs[k];
    if (!b || b.byteLength < bytes) {
      b?.destroy();
      b = bufs[k] = cuda.alloc(Math.max(bytes, 1), device);
    }
    return b.subarray(0, bytes);
  };
  log.debug(`quantizing on cuda:${device} (${cuda.deviceProps(device).name})`);
  return {
    name: "cuda",
    quantize(p, src, dst, scales) {
      const a = take("a", src.byteLength);
      const b = take("b", dst.byteLength);
      const s = take("s", scales.byteLength);
      a.upload(src, stream);
      cuda.quantize(p, a, b, s, stream);
      b.download(dst, stream);
      s.download(scales, stream);
    },
    dequantize(p, q, scales, dst, dtype) {
      const a = take("a", q.byteLength);
      const s = take("s", scales.byteLength);
      const b = take("b", dst.byteLength);
      a.upload(q, stream);
      s.upload(scales, stream);
      cuda.dequantize(p, a, s, b, dtype, stream);
      b.download(dst, stream);
    },
    close() {
      for (const k of ["a", "b", "s"] as const) {
        bufs[k]?.destroy();
        bufs[k] = null;
      }
      stream.destroy();
    },
  };
}

export function quantBackend(device: QuantDevice = "cpu"): QuantBackend {
  if (device === "cuda") return cudaQuantBackend();
  if (device !== "cpu") throw new TrtbError("CLI_BAD_ARG", `device must be cpu or cuda, got ${JSON.stringify(device)}`);
  return cpuQuantBackend();
}
