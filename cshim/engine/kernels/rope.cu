/*
 * rope.cu: q/k/v post-processing (TRTB_OP_QKV_ROPE): bias, q/k RMSNorm, rotary embedding, and
 * the write of k and v into the paged KV cache.
 *
 * Napkin maths (Llama-3-8B, one decode token): each kernel moves a few tens of KB, so they are
 * latency-bound (a few µs each); they matter only through their count, which CUDA graphs hide.
 */
#include "rope.cuh"

#include "quant.h"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

/* One element of k or v as the cache stores it: rounded to a 16-bit / f32 cache; quantized with
 * the layer's scale s for a 1-byte cache, by the rules of trtb_quantize (cshim/common/quant.h, the
 * bits of src/runtime/quant-sim.ts): INT8 clamp(RNE(v / s), -128, 127), FP8 e4m3(clamp(v / s, ±448)). */
template <typename KVT> __device__ __forceinline__ KVT kv_store(float v, float) { return from_f<KVT>(v); }
template <> __device__ __forceinline__ int8_t kv_store<int8_t>(float v, float s) {
  return (int8_t)trtb__q_int(v, s, -128.f, 127.f, TRTB_QROUND_HALF_EVEN);
}
template <> __device__ __forceinline__ __nv_fp8_e4m3 kv_store<__nv_fp8_e4m3>(float v, float s) {
  __nv_fp8_e4m3 r;
  r.__x = (__nv_fp8_storage_t)trtb__q_fp8(v, s);
  return r;
}

/* grid (T, ceil(heads / 4)), 4 warps, one head per warp. Heads: [0, nH) q, [nH, nH+nKV) k, then v.
 * Paged cache layout per layer: [block][k|v][kv head][tokens_per_block][D]. */
#define ROPE_MAX_EPL 8 /* elements per lane: D <= 256 */
template <typename KVT>
__global__ void __launch_bounds__(128) qkv_rope_kernel(QkvRopeArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  extern __shared__ float hs[];  // 4 * D
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int nHeads = a.nH + 2 * a.nKV;
  const int h = blockIdx.y * 4 + warp;
  if (h >= nHeads) return;  // warp-uniform; no block barrier below
  const int64_t t = blockIdx.x;
  const int D = a.D;
  float *s = hs + warp * D;
  const float *x = a.qkv + t * a.ld + (int64_t)h * D;
  for (int i = lane; i < D; i += 32) s[i] = x[i] + (a.bias ? a.bias[(int64_t)h * D + i] : 0.f);
  __syncwarp();
  const bool isq = h < a.nH, isk = !isq && h < a.nH + a.nKV;
  const float *nw = isq ? a.q_norm : (isk ? a.k_norm : nullptr);
  if (nw) {
    float ss = 0.f;
    for (int i = lane; i < D; i += 32) ss += s[i] * s[i];
    ss = warp_sum(ss);
    const float r = 1.f / sqrtf(ss / D + a.eps);
    for (int i = lane; i < D; i += 32) s[i] = s[i] * r * nw[i];
    __syncwarp();
  }
  float o[ROPE_MAX_EPL];
  const int half = a.rot / 2;
  const float p = (float)a.pos[t];
  const float *inv = a.inv_freq + (a.rope_sel ? a.rope_sel[t] * half : 0);
#pragma unroll
  for (int e = 0; e < ROPE_MAX_EPL; e++) {
    const int i = lane + 32 * e;
    float v = i < D ? s[i] : 0.f;
    if ((isq || isk) && i < a.rot) {  // i < rot <= D
      const int j = i < half ? i : i - half;
      const float ang = p * inv[j];
      const float c = cosf(ang) * a.mscale, sn = sinf(ang) * a.mscale;
      v = i < half ? s[i] * c - s[i + half] * sn : s[i] * c + s[i - half] * sn;
    }
    o[e] = v;
  }
  if (isq) {
    float *q = a.q_out + (t * a.nH + h) * D;
#pragma unroll
    for (int e = 0; e < ROPE_MAX_EPL; e++) {
      const int i = lane + 32 * e;
      if (i < D) q[i] = o[e];
    }
  } else {
    const int kv = isk ? 0 : 1;
    const int kh = isk ? h - a.nH : h - a.nH - a.nKV;
    const int64_t slot = a.slot[t];
    const int64_t blk = slot / a.tpb, off = slot % a.tpb;
    KVT *dst = static_cast<KVT *>(a.kv) + (((blk * 2 + kv) * a.nKV + kh) * a.tpb + off) * D;
#pragma unroll
    for (int e = 0; e < ROPE_MAX_EPL; e++) {
      const int i = lane + 32 * e;
      if (i < D) dst[i] = kv_store<KVT>(o[e], a.kv_scale);
    }
  }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

int32_t trtbe_qkv_rope(cudaStream_t s, const QkvRopeArgs &a) {
  if (a.T <= 0) return TRTB_OK;
  if (a.D > 32 * ROPE_MAX_EPL || a.D <= 0) return trtb__fail(TRTB_ERR_UNSUPPORTED, "qkv_rope: head size %d (max 256)", a.D);
  if (a.rot < 0 || a.rot > a.D || a.rot % 2) return trtb__fail(TRTB_ERR_INVALID_ARG, "qkv_rope: rotary dim %d for head size %d", a.rot, a.D);
  const int heads = a.nH + 2 * a.nKV;
  dim3 grid((unsigned)a.T, (unsigned)((heads + 3) / 4));
  const size_t smem = 4 * (size_t)a.D * sizeof(float);
  const bool quant = a.kv_dtype == TRTB_DTYPE_I8 || a.kv_dtype == TRTB_DTYPE_F8_E4M3;
  if (quant ? !(a.kv_scale > 0.f && a.kv_scale < INFINITY) : a.kv_scale != 1.f)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "qkv_rope: kv scale %g for kv dtype %d (a finite scale > 0 for I8/F8_E4M3, else 1)", (double)a.kv_scale, a.kv_dtype);
  switch (a.kv_dtype) {
    case TRTB_DTYPE_BF16: (void)trtbe_launch(qkv_rope_kernel<__nv_bfloat16>, dim3(grid), dim3(128), smem, s, a); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(qkv_rope_kernel<__half>, dim3(grid), dim3(128), smem, s, a); break;
    case TRTB_DTYPE_F32: (void)trtbe_launch(qkv_rope_kernel<float>, dim3(grid), dim3(128), smem, s, a); break;
    case TRTB_DTYPE_I8: (void)trtbe_launch(qkv_rope_kernel<int8_t>, dim3(grid), dim3(128), smem, s, a); break;
    case TRTB_DTYPE_F8_E4M3: (void)trtbe_launch(qkv_rope_kernel<__nv_fp8_e4m3>, dim3(grid), dim3(128), smem, s, a); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "qkv_rope: kv dtype %d is not F32/F16/BF16/I8/F8_E4M3", a.kv_dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("qkv_rope_kernel");
  return TRTB_OK;
}
