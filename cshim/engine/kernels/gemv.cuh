/* gemv.cuh: the GEMV kernel for decode-sized M and the exact path's split (gemv.cu). */
#pragma once

#include "../internal.cuh"

/* GEMV y[M,N] = x[M,K] . w[N,K]^T for M <= 8; rows = rows per warp (1, 2, 4). x is w's dtype, or
 * F32 (then y must be F32): the exact path, no rounding of the activations. */
int32_t trtbe_gemv(cudaStream_t s, const void *w, const void *x, void *y, int32_t M, int32_t N, int32_t K,
                   int32_t w_dtype, int32_t x_dtype, int32_t y_dtype, int64_t ldx, int64_t ldy, int32_t rows);
/* True when trtbe_gemv supports this call (shape, alignment, dtypes). */
bool trtbe_gemv_ok(const void *w, const void *x, int32_t M, int32_t K, int32_t w_dtype, int32_t x_dtype, int32_t y_dtype,
                   int64_t ldx, int32_t rows);
/* hi = round(x), lo = round(x - hi) in dtype (F16/BF16), rows of K at ld K: x = hi + lo to ~16 bits. */
int32_t trtbe_split16(cudaStream_t s, const float *x, int64_t ldx, void *hi, void *lo, int64_t M, int64_t K, int32_t dtype);
