/* fp8.cuh: launcher of TRTB_OP_ACT_FP8 (fp8.cu). */
#pragma once

#include "../internal.cuh"

/* out[m, k] = e4m3(x[m, k] / scale) (round to nearest even, saturated to ±448), out ld K; x F32/F16/BF16 with ld ldx. */
/* dst[i] = bf16(e4m3 src[i]): exact (every e4m3 value is a bf16 value); the FP8 GEMM's exact path. */
int32_t trtbe_fp8_to_bf16(cudaStream_t s, const void *src, void *dst, int64_t n);
/* FP8 GEMV for decode (M <= 8): y[M,N] = alpha · x[M,K] . w[N,K]^T, both e4m3 (x ld K), fp32
 * accumulation on CUDA cores; rows = rows of w per warp (1, 2, 4). Needs K % 16 == 0, 16-byte rows. */
bool trtbe_gemv_fp8_ok(const void *w, const void *x, int32_t M, int32_t K, int32_t y_dtype, int32_t rows);
int32_t trtbe_gemv_fp8(cudaStream_t s, const void *w, const void *x, void *y, int32_t M, int32_t N, int32_t K, int32_t y_dtype,
                       int64_t ldy, float alpha, int32_t rows);
int32_t trtbe_quant_fp8(cudaStream_t s, const void *x, int32_t x_dtype, int64_t ldx, void *out, int64_t M, int64_t K, float scale);
