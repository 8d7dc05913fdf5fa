/* moe.cuh: launcher of TRTB_OP_MOE_ROUTE (moe.cu). */
#pragma once

#include "../internal.cuh"

struct MoeRouteArgs {
  const void *x;
  int32_t x_dtype;
  const float *router;
  int32_t E, H, k;
  int32_t *ids;
  float *w;
  int64_t T;
};

/* Per token: router logits x . router^T, softmax, top-k experts and their renormalised weights. */
int32_t trtbe_moe_route(cudaStream_t s, const MoeRouteArgs &a);
