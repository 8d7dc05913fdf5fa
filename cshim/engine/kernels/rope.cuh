/* rope.cuh: launcher of TRTB_OP_QKV_ROPE (rope.cu). */
#pragma once

#include "../internal.cuh"

struct QkvRopeArgs {
  const float *qkv;
  int64_t ld;
  const float *bias, *q_norm, *k_norm;
  float eps;
  const int32_t *pos, *slot;
  void *kv;
  int32_t kv_dtype, tpb, nH, nKV, D, rot;
  const float *inv_freq;
  float *q_out;
  int64_t T;
  /* LongRoPE: per token 0 (short) / 1 (long) row of inv_freq [2][rot/2]; null: one row. mscale multiplies cos, sin. */
  const int32_t *rope_sel;
  float mscale;
  float kv_scale; /* quantized cache (I8 / F8_E4M3): k and v are stored as quant(x / kv_scale); 1 otherwise */
};

/* Per token and head of the fused qkv row: bias, q/k norm, RoPE; q to q_out, k and v into the
 * paged cache at the token's slot (quantized with kv_scale for a 1-byte cache: kv_store). */
int32_t trtbe_qkv_rope(cudaStream_t s, const QkvRopeArgs &a);
