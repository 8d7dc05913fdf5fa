/* fp8.cuh: launcher of TRTB_OP_QUANT_FP8 (fp8.cu). */
#pragma once

#include "../internal.cuh"

/* out[m, k] = e4m3(x[m, k] / scale) (round to nearest even, saturated to ±448), out ld K; x F32/F16/BF16 with ld ldx. */
/* dst[i] = bf16(e4m3 src[i]): exact (every e4m3 value is a bf16 value); the FP8 GEMM's exact path. */
int32_t trtbe_fp8_to_bf16(cudaStream_t s, const void *src, void *dst, int64_t n);
int32_t trtbe_quant_fp8(cudaStream_t s, const void *x, int32_t x_dtype, int64_t ldx, void *out, int64_t M, int64_t K, float scale);
