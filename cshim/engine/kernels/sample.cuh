/* sample.cuh: launcher of TRTB_OP_SAMPLE (sample.cu). */
#pragma once

#include "../internal.cuh"

struct SampleArgs {
  const void *logits;
  int32_t dtype; /* F32 or F16 */
  int64_t ld;
  int32_t V;
  const trtb_engine_sample_params *params;
  int32_t *out;
  int32_t R;
};

/* One token per row of logits: greedy or temperature / top-k / top-p sampling (params). */
int32_t trtbe_sample(cudaStream_t s, const SampleArgs &a);
