/* attention_prefill.cuh: launcher of TRTB_OP_ATTN_PREFILL (attention_prefill.cu). */
#pragma once

#include "../internal.cuh"

struct AttnPrefillArgs {
  const float *q;
  const void *kv;
  int32_t kv_dtype;
  const int32_t *block_table;
  int32_t max_blocks;
  const int32_t *tiles;
  int32_t n_tiles;
  const int32_t *cu_q, *pos0;
  int32_t nH, nKV, D, tpb;
  float scale, softcap;
  int32_t window;
  void *out;
  int32_t out_dtype;
  float kv_scale; /* quantized cache (I8 / F8_E4M3): values are stored x kv_scale; 1 otherwise */
};

/* Packed query tokens of several sequences (tiles of 64 rows: (sequence, first row) pairs). */
int32_t trtbe_attn_prefill(cudaStream_t s, const AttnPrefillArgs &a);
/* Raise the prefill kernels' dynamic shared memory limits (once per device; from
 * trtbe_kernels_init). */
int32_t trtbe_attn_prefill_init(void);
