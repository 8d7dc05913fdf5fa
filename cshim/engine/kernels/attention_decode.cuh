/* attention_decode.cuh: launcher of TRTB_OP_ATTN_DECODE (attention_decode.cu). */
#pragma once

#include "../internal.cuh"

struct AttnDecodeArgs {
  const float *q;
  const void *kv;
  int32_t kv_dtype;
  const int32_t *block_table;
  int32_t max_blocks;
  const int32_t *ctx_len;
  int32_t nH, nKV, D, tpb;
  float scale, softcap;
  int32_t window, nsplit;
  float *ws;
  void *out;
  int32_t out_dtype;
  int32_t B;
  float kv_scale; /* quantized cache (I8 / F8_E4M3): values are stored x kv_scale; 1 otherwise */
};

/* One new query token per sequence against its paged context (split-K over the context when
 * nsplit > 1, with ws as the workspace). */
int32_t trtbe_attn_decode(cudaStream_t s, const AttnDecodeArgs &a);
