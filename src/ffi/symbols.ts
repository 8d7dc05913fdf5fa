/**
 * The symbol tables of the two native libraries, one row per C function in
 * `cshim/include/trtb.h` (see there for what each does and returns). Also the C enums that cross
 * the boundary: dtype codes and status codes. Keep this file in step with the header; bump
 * `ABI_VERSION` with `TRTB_ABI_VERSION`.
 *
 * Type notes (bun:ffi): `ptr` is a TypedArray, a pointer number or null; `u64` takes a number
 * (exact below 2^53, far beyond any buffer); `i32` statuses come back as numbers.
 */
import type { DType } from "../dtype.ts";
import type { QuantKernelParams } from "./quant-params.ts";

/** `TRTB_ABI_VERSION` this TypeScript was written against (2: quantization, 3: weight-only engine layout, 4: convert → cast, 5: NaN/Inf scan). */
export const ABI_VERSION = 5;

/** libtrtb.so: CPU conversions and transpose. */
export const CPU_SYMBOLS = {
  trtb_abi_version: { args: [], returns: "u32" },
  trtb_status_str: { args: ["i32"], returns: "cstring" },
  trtb_last_error: { args: ["ptr", "u64"], returns: "i32" },
  trtb_dtype_size: { args: ["i32"], returns: "u32" },
  trtb_set_num_threads: { args: ["i32"], returns: "i32" },
  trtb_cast: { args: ["ptr", "u64", "i32", "ptr", "u64", "i32"], returns: "i32" },
  trtb_transpose2d: { args: ["ptr", "u64", "ptr", "u64", "u64", "u64", "u32"], returns: "i32" },
  trtb_quantize: { args: ["ptr", "ptr", "u64", "ptr", "u64", "ptr", "u64"], returns: "i32" },
  trtb_dequantize: { args: ["ptr", "ptr", "u64", "ptr", "u64", "ptr", "u64", "i32"], returns: "i32" },
  trtb_wo_pack: { args: ["ptr", "u64", "i64", "i64", "i32", "ptr", "u64"], returns: "i32" },
  // f32 GEMM of the CPU runner (cshim/cpu/gemm.c; ABI 5)
  trtb_gemm_f32: { args: ["ptr", "u64", "ptr", "u64", "ptr", "u64", "ptr", "u64", "u64", "u64", "u64", "u64", "u64", "u64", "u32"], returns: "i32" },
  trtb_gemm_isa: { args: ["i32"], returns: "i32" },
  // ABI 5: numeric sanity
  trtb_find_nonfinite: { args: ["ptr", "u64", "i32", "ptr"], returns: "i32" },
  trtb_gated_act_f32: { args: ["ptr", "u64", "ptr", "u64", "ptr", "u64", "u64", "u64", "u64", "u64", "i32"], returns: "i32" },
} as const;

/** libtrtb_cuda.so: devices, streams, device memory and GPU kernels. */
export const CUDA_SYMBOLS = {
  trtb_cuda_abi_version: { args: [], returns: "u32" },
  trtb_cuda_status_str: { args: ["i32"], returns: "cstring" },
  trtb_cuda_last_error: { args: ["ptr", "u64"], returns: "i32" },
  trtb_cuda_features: { args: [], returns: "u32" },
  trtb_cuda_runtime_version: { args: [], returns: "i32" },
  trtb_cuda_driver_version: { args: [], returns: "i32" },
  trtb_cuda_device_count: { args: ["ptr"], returns: "i32" },
  trtb_cuda_device_props_get: { args: ["i32", "ptr"], returns: "i32" },
  trtb_cuda_device_sync: { args: ["i32"], returns: "i32" },
  trtb_cuda_stream_create: { args: ["i32", "ptr"], returns: "i32" },
  trtb_cuda_stream_destroy: { args: ["ptr"], returns: "i32" },
  trtb_cuda_stream_sync: { args: ["ptr"], returns: "i32" },
  trtb_cuda_malloc: { args: ["i32", "u64", "ptr"], returns: "i32" },
  trtb_cuda_free: { args: ["ptr"], returns: "i32" },
  trtb_cuda_memcpy_h2d: { args: ["ptr", "ptr", "ptr", "u64"], returns: "i32" },
  trtb_cuda_memcpy_d2h: { args: ["ptr", "ptr", "ptr", "u64"], returns: "i32" },
  trtb_cuda_memcpy_d2d: { args: ["ptr", "ptr", "ptr", "u64"], returns: "i32" },
  trtb_cuda_memset: { args: ["ptr", "ptr", "u32", "u64"], returns: "i32" },
  trtb_cuda_cast: { args: ["ptr", "ptr", "u64", "i32", "ptr", "u64", "i32"], returns: "i32" },
  trtb_cuda_transpose2d: { args: ["ptr", "ptr", "u64", "ptr", "u64", "u64", "u64", "u32"], returns: "i32" },
  trtb_cuda_quantize: { args: ["ptr", "ptr", "ptr", "u64", "ptr", "u64", "ptr", "u64"], returns: "i32" },
  trtb_cuda_dequantize: { args: ["ptr", "ptr", "ptr", "u64", "ptr", "u64", "ptr", "u64", "i32"], returns: "i32" },
} as const;

export type CpuSymbols = typeof CPU_SYMBOLS;
export type CudaSymbols = typeof CUDA_SYMBOLS;

/** `trtb_dtype` values (append-only in the header; 0 is never valid). */
export const DTYPE_CODE: Record<DType, number> = {
  F32: 1, F16: 2, BF16: 3, F64: 4, I8: 5, U8: 6, I16: 7, U16: 8, I32: 9, U32: 10, I64: 11, U64: 12, BOOL: 13,
  F8_E4M3: 14, F8_E5M2: 15,
};

/** Status codes returned by every fallible call (`TRTB_OK`, `TRTB_ERR_*`). */
export const STATUS = {
  OK: 0,
  INVALID_ARG: -1,
  DTYPE: -2,
  SIZE: -3,
  OUT_OF_MEMORY: -4,
  INTERNAL: -5,
  UNSUPPORTED: -6,
  CUDA_UNAVAILABLE: -100,
  CUDA_NO_DEVICE: -101,
  CUDA_OUT_OF_MEMORY: -102,
  CUDA: -103,
} as const;

/** `TRTB_CUDA_FEATURE_*` bits of `trtb_cuda_features()`. */
export const CUDA_FEATURE = { CUBLASLT: 1 << 0, TENSORRT: 1 << 1 } as const;

/**
 * Layout of `trtb_cuda_device_props` (x86-64 / aarch64 Linux): u32 struct_size, i32 major,
 * i32 minor, i32 multiprocessors, u64 total_memory, char name[256].
 */
export const DEVICE_PROPS = { size: 280, major: 4, minor: 8, multiprocessors: 12, totalMemory: 16, name: 24, nameLength: 256 } as const;

/** `TRTB_GEMM_ISA_*` kernel sets of `trtb_gemm_f32` (and the `TRTB_GEMM_W_KN` flag). */
export const GEMM_ISA_CODE = { auto: 0, portable: 1, avx2: 2, avx512: 3 } as const;
export const GEMM_FLAG = { W_KN: 1 << 0 } as const;
/** `TRTB_ACT_*` of `trtb_gated_act_f32`. */
export const ACT_CODE = { silu: 1, gelu_tanh: 2 } as const;

/** `trtb_qformat` values. */
export const QFORMAT_CODE = { int8: 1, int4_packed_rows: 2, fp8_e4m3: 3 } as const;
/** `trtb_qround` values. */
export const QROUND_CODE = { half_even: 1, half_away: 2 } as const;
/** `TRTB_QUANT_*` flag bits. */
export const QUANT_FLAG = { CLAMP: 1 << 0, DIVIDE_BY_STORED: 1 << 1 } as const;

/**
 * Layout of `trtb_quant_params` (80 bytes; cshim/cpu/quant.c asserts it): u32 struct_size, i32
 * format, i32 src_dtype, i32 scale_dtype, u64 rows, u64 cols, u64 group_size, f32 divisor,
 * f32 min_scale, f32 zero_scale, f32 clamp_lo, f32 clamp_hi, i32 qmin, i32 qmax, i32 rounding,
 * u32 flags, u32 reserved.
 */
export const QUANT_PARAMS = {
  size: 80, format: 4, srcDtype: 8, scaleDtype: 12, rows: 16, cols: 24, groupSize: 32, divisor: 40, minScale: 44,
  zeroScale: 48, clampLo: 52, clampHi: 56, qmin: 60, qmax: 64, rounding: 68, flags: 72,
} as const;

/** Fill a `trtb_quant_params` struct. The only writer of that layout. */
export function encodeQuantParams(p: QuantKernelParams): Uint8Array {
  const L = QUANT_PARAMS;
  const buf = new Uint8Array(L.size);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, L.size, true);
  dv.setInt32(L.format, QFORMAT_CODE[p.format], true);
  dv.setInt32(L.srcDtype, DTYPE_CODE[p.srcDtype], true);
  dv.setInt32(L.scaleDtype, DTYPE_CODE[p.scaleDtype], true);
  dv.setBigUint64(L.rows, BigInt(p.rows), true);
  dv.setBigUint64(L.cols, BigInt(p.cols), true);
  dv.setBigUint64(L.groupSize, BigInt(p.groupSize), true);
  dv.setFloat32(L.divisor, p.divisor, true);
  dv.setFloat32(L.minScale, p.minScale, true);
  dv.setFloat32(L.zeroScale, p.zeroScale, true);
  dv.setFloat32(L.clampLo, p.clamp ? p.clamp[0] : 0, true);
  dv.setFloat32(L.clampHi, p.clamp ? p.clamp[1] : 0, true);
  dv.setInt32(L.qmin, p.format === "fp8_e4m3" ? 0 : p.qmin, true);
  dv.setInt32(L.qmax, p.format === "fp8_e4m3" ? 0 : p.qmax, true);
  dv.setInt32(L.rounding, QROUND_CODE[p.rounding], true);
  dv.setUint32(L.flags, (p.clamp ? QUANT_FLAG.CLAMP : 0) | (p.divideByStoredScale ? QUANT_FLAG.DIVIDE_BY_STORED : 0), true);
  return buf;
}
