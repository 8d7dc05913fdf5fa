/* norm.cuh: launcher of TRTB_OP_ADD_NORM (norm.cu). */
#pragma once

#include "fp8_store.cuh"

struct AddNormArgs {
  float *res;
  const float *delta;
  int64_t delta_ld;
  const float *delta_bias, *delta_norm, *norm_w;
  float eps;
  void *out;
  int32_t out_dtype;
  int32_t H;
  int64_t T;
  float out_scale; /* out_dtype F8_E4M3: out = e4m3(value / out_scale) */
};

/* res += delta (+ bias, optionally RMS-normalised itself), then out = RMSNorm(res) * norm_w. */
int32_t trtbe_add_norm(cudaStream_t s, const AddNormArgs &a);
/* Raise add_norm's dynamic shared memory limit (once per device; from trtbe_kernels_init). */
int32_t trtbe_norm_init(void);
