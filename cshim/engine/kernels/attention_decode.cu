/*
 * attention_decode.cu: decode attention over the paged KV cache (TRTB_OP_ATTN_DECODE): one new
 * query token per sequence. Grid (kv head, sequence, split): each block takes a slice of the
 * context for all the query heads that share its KV head (GQA), writes partial (max, sum,
 * unnormalised output), and the last block of a (sequence, kv head) merges the splits
 * (flash-decoding). Split count is fixed per launch, the slice length follows each sequence's
 * length read on the device, so a captured graph serves every step.
 * Cache layout and masks: attention.cuh. A quantized cache (1-byte INT8 / FP8 elements, values
 * stored / kv_scale) is read as is: kv_scale is folded into the score scale (K) and into the
 * output normalisation (V), so the inner loops are the same as for 16-bit KV.
 */
#include "attention.cuh"
#include "attention_decode.cuh"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

#define DEC_THREADS 128
#define DEC_TK 16  /* keys per tile: one score pass (4 warps x 4 tokens); V loads all issued up front */
#define DEC_TK_1B 32  /* keys per tile of a 1-byte (INT8 / FP8) cache: two score passes, the same bytes in flight */
#define DEC_MAX_COUNTERS 65536  /* split-K counters at the start of the workspace (256 KiB) */
#define DEC_MAX_SPLITS 128      /* nsplit limit (the merge keeps per-split weights in shared memory) */

template <int D, int GMAX, typename KVT>
__global__ void __launch_bounds__(DEC_THREADS) attn_decode_kernel(AttnDecodeArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  constexpr int E = D / 8;                 // elements per lane in the score phase (8 lanes per token)
  // K loads of W elements: 16 bytes (16-bit KV) where E allows (D = 64, 128, 256), else 8 bytes
  // (D = 32, 96: E = 4, 12) or 4 bytes (D = 80: E = 10); a lane's E elements start at sub * E.
  // 1-byte KV: the same W elements are 8, 4 or 2 bytes, aligned likewise (rows are D bytes, D % 16 == 0).
  constexpr int W = E % 8 == 0 ? 8 : (E % 4 == 0 ? 4 : 2);
  static_assert(D % 16 == 0 && D >= 32 && D <= 256, "attn_decode_kernel: head size a multiple of 16 in [32, 256]");
  static_assert(E % W == 0 && (E / W) * W == E, "attn_decode_kernel: whole loads per lane");
  constexpr int DPT = (D + DEC_THREADS - 1) / DEC_THREADS;  // output dims per thread
  constexpr int TK = sizeof(KVT) == 1 ? DEC_TK_1B : DEC_TK;  // keys per tile
  static_assert(TK % 16 == 0, "attn_decode_kernel: whole score passes of 16 keys");
  __shared__ float qs[GMAX][D];
  __shared__ float ps[GMAX][TK];
  // 1-byte caches: the tile's V row pointers go through shared memory (found by the score pass),
  // which keeps 32-key tiles within the register budget of the 16-bit kernel's occupancy
  constexpr bool VS = sizeof(KVT) == 1;
  __shared__ const KVT *vrow_s[VS ? TK : 1];
  __shared__ float m_s[GMAX], l_s[GMAX], alpha_s[GMAX];

  const int kvh = blockIdx.x, b = blockIdx.y, split = blockIdx.z;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int G = a.nH / a.nKV;
  const KVT *kv = static_cast<const KVT *>(a.kv);
  const int L = a.ctx_len[b];
  const int lo = a.window > 0 ? max(0, L - a.window) : 0;
  const int n = L - lo;
  // Splits actually used for this sequence: at least DEC_TK keys each (short contexts need few).
  const int ns = max(1, min(a.nsplit, (n + DEC_TK - 1) / DEC_TK));
  if (split >= ns) return;
  const int chunk = (n + ns - 1) / ns;
  const float qk_scale = a.scale * a.kv_scale;  // K dequantization folded into the score scale
  const int start = lo + split * chunk;
  const int end = min(L, start + chunk);

  for (int idx = tid; idx < G * D; idx += DEC_THREADS)
    qs[idx / D][idx % D] = a.q[((int64_t)b * a.nH + kvh * G + idx / D) * D + idx % D];
  if (tid < GMAX) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.f;
  }
  float acc[GMAX][DPT];
#pragma unroll
  for (int g = 0; g < GMAX; g++)
#pragma unroll
    for (int j = 0; j < DPT; j++) acc[g][j] = 0.f;
  __syncthreads();

  for (int t0 = start; t0 < end; t0 += TK) {
    const int ntok = min(TK, end - t0);
    // scores: 8 lanes per token, 16 tokens per pass
#pragma unroll
    for (int pass = 0; pass < TK / 16; pass++) {
      const int tl = pass * 16 + warp * 4 + (lane >> 3);
      const int sub = lane & 7;
      float sc[GMAX];
#pragma unroll
      for (int g = 0; g < GMAX; g++) sc[g] = 0.f;
      if (tl < ntok) {
        const KVT *k = kv_row(kv, a.block_table, a.max_blocks, b, t0 + tl, 0, kvh, a.nKV, a.tpb, D) + sub * E;
        if constexpr (VS) {
          if (sub == 0) vrow_s[tl] = kv_row(kv, a.block_table, a.max_blocks, b, t0 + tl, 1, kvh, a.nKV, a.tpb, D);
        }
        float kf[E];
#pragma unroll
        for (int c = 0; c < E / W; c++) loadw<W, KVT>(k + W * c, kf + W * c);
#pragma unroll
        for (int g = 0; g < GMAX; g++) {
          if (g < G) {
            float s = 0.f;
#pragma unroll
            for (int e = 0; e < E; e++) s += kf[e] * qs[g][sub * E + e];
            sc[g] = s;
          }
        }
      }
#pragma unroll
      for (int g = 0; g < GMAX; g++) {
        sc[g] += __shfl_xor_sync(0xffffffffu, sc[g], 4);
        sc[g] += __shfl_xor_sync(0xffffffffu, sc[g], 2);
        sc[g] += __shfl_xor_sync(0xffffffffu, sc[g], 1);
      }
      if (sub == 0 && tl < ntok) {
#pragma unroll
        for (int g = 0; g < GMAX; g++) {
          if (g < G) {
            float s = sc[g] * qk_scale;
            if (a.softcap > 0.f) s = tanhf(s / a.softcap) * a.softcap;
            ps[g][tl] = s;
          }
        }
      }
    }
    __syncthreads();
    // online softmax, one warp per head
    for (int g = warp; g < G; g += DEC_THREADS / 32) {
      float mx = -INFINITY;
      for (int j = lane; j < ntok; j += 32) mx = fmaxf(mx, ps[g][j]);
      mx = warp_max(mx);
      const float m_old = m_s[g];
      const float m_new = fmaxf(m_old, mx);
      float sum = 0.f;
      for (int j = lane; j < ntok; j += 32) {
        const float p = expf(ps[g][j] - m_new);
        ps[g][j] = p;
        sum += p;
      }
      sum = warp_sum(sum);
      if (lane == 0) {
        const float al = m_old == -INFINITY ? 0.f : expf(m_old - m_new);
        alpha_s[g] = al;
        l_s[g] = l_s[g] * al + sum;
        m_s[g] = m_new;
      }
    }
    __syncthreads();
    // P . V: the tile's V rows are located first, then every load issued before the first use
    const KVT *vrow[VS ? 1 : TK];
    if constexpr (!VS) {
#pragma unroll
      for (int tl = 0; tl < TK; tl++)
        vrow[tl] = kv_row(kv, a.block_table, a.max_blocks, b, t0 + min(tl, ntok - 1), 1, kvh, a.nKV, a.tpb, D);
    }
#pragma unroll
    for (int j = 0; j < DPT; j++) {
      const int d = tid + j * DEC_THREADS;
      if (d < D) {
        float v[TK];
        if constexpr (VS) {
#pragma unroll
          for (int tl = 0; tl < TK; tl++) v[tl] = tl < ntok ? to_f<KVT>(vrow_s[tl][d]) : 0.f;
        } else {
#pragma unroll
          for (int tl = 0; tl < TK; tl++) v[tl] = tl < ntok ? to_f<KVT>(vrow[tl][d]) : 0.f;
        }
#pragma unroll
        for (int g = 0; g < GMAX; g++) {
          if (g < G) {
            float s = acc[g][j] * alpha_s[g];
#pragma unroll
            for (int tl = 0; tl < TK; tl++) s += (tl < ntok ? ps[g][tl] : 0.f) * v[tl];
            acc[g][j] = s;
          }
        }
      }
    }
    __syncthreads();
  }

  // One split: normalise and write the output directly.
  if (ns == 1) {
#pragma unroll
    for (int g = 0; g < GMAX; g++) {
      if (g < G) {
        const float inv = l_s[g] > 0.f ? a.kv_scale / l_s[g] : 0.f;  // V dequantization folded in
#pragma unroll
        for (int j = 0; j < DPT; j++) {
          const int d = tid + j * DEC_THREADS;
          if (d < D) store_out(a, ((int64_t)b * a.nH + kvh * G + g) * D + d, acc[g][j] * inv);
        }
      }
    }
    return;
  }
  // ws = DEC_MAX_COUNTERS u32 counters (one per (b, kv head), zero at rest), then the partials:
  // [B, nH, nsplit] x D outputs, then (m, l) pairs.
  const int64_t nrec = (int64_t)a.B * a.nH * a.nsplit;
  unsigned *counter = reinterpret_cast<unsigned *>(a.ws) + (int64_t)b * a.nKV + kvh;
  float *po = a.ws + DEC_MAX_COUNTERS;
  float *pml = po + nrec * D;
#pragma unroll
  for (int g = 0; g < GMAX; g++) {
    if (g < G) {
      const int64_t rec = ((int64_t)b * a.nH + kvh * G + g) * a.nsplit + split;
#pragma unroll
      for (int j = 0; j < DPT; j++) {
        const int d = tid + j * DEC_THREADS;
        if (d < D) po[rec * D + d] = acc[g][j];
      }
      if (tid == 0) {
        pml[rec * 2] = m_s[g];
        pml[rec * 2 + 1] = l_s[g];
      }
    }
  }
  // The last split block of this (sequence, kv head) merges all splits (flash-decoding reduce).
  __shared__ unsigned ticket;
  __threadfence();
  __syncthreads();
  if (tid == 0) ticket = atomicAdd(counter, 1u);
  __syncthreads();
  if (ticket != (unsigned)ns - 1) return;
  __threadfence();
  // parallel merge: all (head, split) stats at once, then every output with its loads in flight
  __shared__ float cw[GMAX][DEC_MAX_SPLITS], cl[GMAX][DEC_MAX_SPLITS], linv[GMAX];
  for (int i = tid; i < G * ns; i += DEC_THREADS) {
    const int g = i / ns, sp = i % ns;
    const int64_t rec = ((int64_t)b * a.nH + kvh * G + g) * a.nsplit + sp;
    cw[g][sp] = __ldcg(&pml[rec * 2]);
    cl[g][sp] = __ldcg(&pml[rec * 2 + 1]);
  }
  __syncthreads();
  for (int g = warp; g < G; g += DEC_THREADS / 32) {
    float mx = -INFINITY;
    for (int sp = lane; sp < ns; sp += 32) mx = fmaxf(mx, cw[g][sp]);
    mx = warp_max(mx);
    float L = 0.f;
    for (int sp = lane; sp < ns; sp += 32) {
      const float w = cw[g][sp] == -INFINITY ? 0.f : expf(cw[g][sp] - mx);
      cw[g][sp] = w;
      L += w * cl[g][sp];
    }
    L = warp_sum(L);
    if (lane == 0) linv[g] = L > 0.f ? a.kv_scale / L : 0.f;  // V dequantization folded in
  }
  __syncthreads();
  for (int i = tid; i < G * D; i += DEC_THREADS) {
    const int g = i / D, d = i % D;
    const int64_t rec0 = ((int64_t)b * a.nH + kvh * G + g) * a.nsplit;
    float o = 0.f;
#pragma unroll 8
    for (int sp = 0; sp < ns; sp++) o += __ldcg(&po[(rec0 + sp) * D + d]) * cw[g][sp];
    store_out(a, ((int64_t)b * a.nH + kvh * G + g) * D + d, o * linv[g]);
  }
  if (tid == 0) *counter = 0u;  // ready for the next launch (graph replays)
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

template <int D, int GMAX, typename KVT>
static void launch_decode(cudaStream_t s, const AttnDecodeArgs &a) {
  dim3 grid((unsigned)a.nKV, (unsigned)a.B, (unsigned)a.nsplit);
  (void)trtbe_launch(attn_decode_kernel<D, GMAX, KVT>, dim3(grid), dim3(DEC_THREADS), 0, s, a);
}

template <int D, typename KVT>
static int32_t decode_g(cudaStream_t s, const AttnDecodeArgs &a) {
  const int G = a.nH / a.nKV;
  if (G <= 1) launch_decode<D, 1, KVT>(s, a);
  else if (G <= 2) launch_decode<D, 2, KVT>(s, a);
  else if (G <= 4) launch_decode<D, 4, KVT>(s, a);
  else if (G <= 8) launch_decode<D, 8, KVT>(s, a);
  else if (G <= 16) launch_decode<D, 16, KVT>(s, a);
  else return trtb__fail(TRTB_ERR_UNSUPPORTED, "attention: %d query heads per KV head (max 16)", G);
  TRTB_CUDA_CHECK_LAUNCH("attn_decode_kernel");
  return TRTB_OK;
}

template <typename KVT>
static int32_t decode_d(cudaStream_t s, const AttnDecodeArgs &a) {
  switch (a.D) {
    case 32: return decode_g<32, KVT>(s, a);
    case 64: return decode_g<64, KVT>(s, a);
    case 80: return decode_g<80, KVT>(s, a);
    case 96: return decode_g<96, KVT>(s, a);
    case 128: return decode_g<128, KVT>(s, a);
    case 256: return decode_g<256, KVT>(s, a);
    default: return trtb__fail(TRTB_ERR_UNSUPPORTED, "attention: head size %d (supported: " TRTBE_ATTN_HEAD_SIZES ")", a.D);
  }
}

int32_t trtbe_attn_decode(cudaStream_t s, const AttnDecodeArgs &a) {
  if (a.B <= 0) return TRTB_OK;
  if (a.out_dtype != TRTB_DTYPE_BF16 && a.out_dtype != TRTB_DTYPE_F16 && a.out_dtype != TRTB_DTYPE_F32)
    return trtb__fail(TRTB_ERR_DTYPE, "attention: out dtype %d", a.out_dtype);
  if (a.nsplit > 1 && !a.ws) return trtb__fail(TRTB_ERR_INVALID_ARG, "attention: nsplit %d needs a workspace", a.nsplit);
  if ((int64_t)a.B * a.nKV > DEC_MAX_COUNTERS) return trtb__fail(TRTB_ERR_UNSUPPORTED, "attention: %d sequences x %d KV heads exceed %d", a.B, a.nKV, DEC_MAX_COUNTERS);
  if (a.nKV <= 0 || a.nH % a.nKV) return trtb__fail(TRTB_ERR_INVALID_ARG, "attention: %d heads over %d KV heads", a.nH, a.nKV);
  if (a.nsplit < 1 || a.nsplit > DEC_MAX_SPLITS) return trtb__fail(TRTB_ERR_INVALID_ARG, "attention: nsplit %d (1..%d)", a.nsplit, DEC_MAX_SPLITS);
  if (a.tpb <= 0) return trtb__fail(TRTB_ERR_INVALID_ARG, "attention: tokens_per_block %d", a.tpb);
  const bool quant = a.kv_dtype == TRTB_DTYPE_I8 || a.kv_dtype == TRTB_DTYPE_F8_E4M3;
  if (quant ? !(a.kv_scale > 0.f && a.kv_scale < INFINITY) : a.kv_scale != 1.f)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "attention: kv scale %g for kv dtype %d (a finite scale > 0 for I8/F8_E4M3, else 1)", (double)a.kv_scale, a.kv_dtype);
  int32_t st;
  switch (a.kv_dtype) {
    case TRTB_DTYPE_BF16: st = decode_d<__nv_bfloat16>(s, a); break;
    case TRTB_DTYPE_F16: st = decode_d<__half>(s, a); break;
    case TRTB_DTYPE_F32: st = decode_d<float>(s, a); break;
    case TRTB_DTYPE_I8: st = decode_d<int8_t>(s, a); break;
    case TRTB_DTYPE_F8_E4M3: st = decode_d<__nv_fp8_e4m3>(s, a); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "attention: kv dtype %d is not F32/F16/BF16/I8/F8_E4M3", a.kv_dtype);
  }
  return st;
}
