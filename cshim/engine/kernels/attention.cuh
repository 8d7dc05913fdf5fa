/*
 * attention.cuh: what the two attention kernels (attention_decode.cu, attention_prefill.cu) share:
 * addressing of the paged KV cache and the output store. Both are flash style (online softmax,
 * nothing of size seq x seq is ever stored).
 *
 * Paged cache layout per layer: [block][k|v][kv head][tokens_per_block][D], 16-bit elements (f32 in
 * the runtime's exact numerics mode).
 * Masks: causal; sliding window keeps keys with pos - window < key <= pos; Gemma-2 soft-cap is
 * applied to scaled scores before masking.
 */
#pragma once

#include "../internal.cuh"

/* The head sizes both attention kernels are instantiated for (src/builder/build.ts allows the same
 * set). Prefill of 16-bit KV runs on tensor cores at every one of them (multiples of 16). */
#define TRTBE_ATTN_HEAD_SIZES "32, 64, 80, 96, 128, 256"

template <typename KVT>
__device__ __forceinline__ const KVT *kv_row(const KVT *kv, const int32_t *table, int32_t max_blocks, int b, int t,
                                             int kvsel, int kvh, int nKV, int tpb, int D) {
  const int64_t blk = table[(int64_t)b * max_blocks + t / tpb];
  const int off = t % tpb;
  return kv + (((blk * 2 + kvsel) * nKV + kvh) * tpb + off) * (int64_t)D;
}

/* out[i] = v in the op's output dtype. */
template <typename A> __device__ __forceinline__ void store_out(const A &a, int64_t i, float v) {
  switch (a.out_dtype) {
    case TRTB_DTYPE_BF16: static_cast<__nv_bfloat16 *>(a.out)[i] = __float2bfloat16_rn(v); break;
    case TRTB_DTYPE_F16: static_cast<__half *>(a.out)[i] = __float2half_rn(v); break;
    default: static_cast<float *>(a.out)[i] = v; break;
  }
}
