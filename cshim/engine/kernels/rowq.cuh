/* rowq.cuh: launchers of per-token (row) dynamic activation quantization (TRTB_OP_ACT_ROWQ) and of
 * the dequantization of integer / f32 GEMM sums with per-row and per-column scales (rowq.cu). */
#pragma once

#include "../internal.cuh"

/* The smallest FP8 per-token scale, 1/(448·512) in f32 (TensorRT-LLM's dynamic per-token kernels). */
#define TRTBE_FP8_MIN_ROW_SCALE ((float)(1.0 / 229376.0))

/* Per row m of x (F32/F16/BF16, ld ldx), out [M, K] (ld K) and xs[m]:
 *   I8:       v = x / div[k] (div null: x); a = max|v|; q = clamp(RNE(v · f32(127 / a)), −128, 127),
 *             xs = f32(a / 127) (a zero row: q = 0, xs = 0)
 *   F8_E4M3:  v = clamp(x, lo, hi) (lo < hi; else no clamp); a = max|v|; s = max(f32(a / 448), min);
 *             q = e4m3(f32(v / s)) (RNE, saturated), xs = s */
int32_t trtbe_quant_rows(cudaStream_t s, const void *x, int32_t x_dtype, int64_t ldx, const float *div, void *out, int32_t out_dtype,
                         int64_t M, int64_t K, float *xs, float lo, float hi);
/* y[m, n] = f32(f32(acc[m, n] · f32(a · ws[n])) · xs[m]) (xs null: no second product) into y
 * (F32/F16/BF16, ld ldy); acc i32 (acc_f32 false) or f32 [M, N], dense. */
int32_t trtbe_dequant_acc(cudaStream_t s, const void *acc, bool acc_f32, const float *ws, float a, const float *xs, void *y, int32_t y_dtype,
                          int64_t ldy, int64_t M, int64_t N);
