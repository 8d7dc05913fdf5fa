/* fp8_store.cuh: the output conversion of kernels that can write an FP8 GEMM's input directly
 * (ADD_NORM, GATED_ACT): a 16/32-bit dtype as from_f, or e4m3 of value / scale (round to nearest
 * even, saturated: the bits of TRTB_OP_ACT_FP8 and of the CPU runner's simulation). */
#pragma once

#include <cuda_fp8.h>

#include "../internal.cuh"

/* Tag type: e4m3 output. */
struct Fp8E4M3 {};

template <typename T> struct OutCvt {
  using S = T;
  static __device__ __forceinline__ S cvt(float v, float) { return from_f<T>(v); }
};
template <> struct OutCvt<Fp8E4M3> {
  using S = __nv_fp8_storage_t;
  static __device__ __forceinline__ S cvt(float v, float scale) { return __nv_cvt_float_to_fp8(__fdiv_rn(v, scale), __NV_SATFINITE, __NV_E4M3); }
};
