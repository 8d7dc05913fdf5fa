/* int8.cuh: launchers of SmoothQuant W8A8's static activation quantization (int8.cu; the int32 sums are dequantized by rowq.cu). */
#pragma once

#include "../internal.cuh"

/* out[m, k] = clamp(RNE(f32(f32(x[m, k] · pre[k]) / scale)), −128, 127) (pre null: 1), out ld K; x f32 ld ldx. */
int32_t trtbe_quant_int8(cudaStream_t s, const float *x, int64_t ldx, const float *pre, void *out, int64_t M, int64_t K, float scale);
