/* int8.cuh: launchers of SmoothQuant W8A8's activation quantization and int32 → float dequant (int8.cu). */
#pragma once

#include "../internal.cuh"

/* out[m, k] = clamp(RNE(f32(f32(x[m, k] · pre[k]) / scale)), −128, 127) (pre null: 1), out ld K; x f32 ld ldx. */
int32_t trtbe_quant_int8(cudaStream_t s, const float *x, int64_t ldx, const float *pre, void *out, int64_t M, int64_t K, float scale);
/* y[m, n] = float(acc[m, n]) · (a · ws[n]) into y (F32/F16/BF16, ld ldy); acc i32 [M, N]. */
int32_t trtbe_dequant_i32(cudaStream_t s, const int32_t *acc, const float *ws, float a, void *y, int32_t y_dtype, int64_t ldy, int64_t M, int64_t N);
