/* activation.cuh: launchers of TRTB_OP_GATED_ACT and TRTB_OP_SOFTCAP (activation.cu). */
#pragma once

#include "fp8_store.cuh"

struct GatedActArgs {
  const void *in;
  int32_t in_dtype;
  const float *bias;
  void *out;
  int32_t out_dtype;
  int64_t I, T;
  int32_t act;
  float out_scale; /* out_dtype F8_E4M3: out = e4m3(value / out_scale) */
  const float *mul; /* f32 [I] or NULL: the value times mul[i] (AWQ's prequant of the next GEMM) */
};

/* out[t, i] = up[t, i] * act(gate[t, i]) over rows of [up | gate] (act 0 SiLU, 1 GELU-tanh). */
int32_t trtbe_gated_act(cudaStream_t s, const GatedActArgs &a);
/* x = tanh(x / cap) * cap in place (Gemma-2 logit soft-cap); x F32 or F16 (dtype). */
int32_t trtbe_softcap(cudaStream_t s, void *x, int32_t dtype, int64_t n, float cap);
/* x[r, c] *= v[c] in place (x F32/F16/BF16 rows of ld elements, v f32 [cols]). */
int32_t trtbe_mul_cols(cudaStream_t s, void *x, int32_t dtype, int64_t ld, const float *v, int64_t rows, int64_t cols);
