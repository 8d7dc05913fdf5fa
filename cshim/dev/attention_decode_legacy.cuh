/*
 * attention_decode_legacy.cuh: the decode attention kernel as first verified on the GPU, kept for
 * the parity harness (legacy_parity.cu). It differs from cshim/engine/kernels/attention_decode.cu
 * only in the split-K merge: one head at a time, with each output's splits re-read serially,
 * where the engine's kernel stages every (head, split) weight in shared memory first. It was the
 * engine's TRTB_ENGINE_LEGACY=1 path; the engine no longer builds it.
 *
 * Included after attention_decode.cu (DEC_* constants, AttnDecodeArgs, kv_row, store_out).
 */
#pragma once

template <int D, int GMAX, typename KVT>
__global__ void __launch_bounds__(DEC_THREADS) attn_decode_legacy_kernel(AttnDecodeArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  constexpr int E = D / 8;                 // elements per lane in the score phase (8 lanes per token)
  constexpr int DPT = (D + DEC_THREADS - 1) / DEC_THREADS;  // output dims per thread
  __shared__ float qs[GMAX][D];
  __shared__ float ps[GMAX][DEC_TK];
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

  for (int t0 = start; t0 < end; t0 += DEC_TK) {
    const int ntok = min(DEC_TK, end - t0);
    // scores: 8 lanes per token, 16 tokens per pass
#pragma unroll
    for (int pass = 0; pass < DEC_TK / 16; pass++) {
      const int tl = pass * 16 + warp * 4 + (lane >> 3);
      const int sub = lane & 7;
      float sc[GMAX];
#pragma unroll
      for (int g = 0; g < GMAX; g++) sc[g] = 0.f;
      if (tl < ntok) {
        const KVT *k = kv_row(kv, a.block_table, a.max_blocks, b, t0 + tl, 0, kvh, a.nKV, a.tpb, D) + sub * E;
        float kf[E];
#pragma unroll
        for (int c = 0; c < E / 8; c++) load8<KVT>(k + 8 * c, kf + 8 * c);
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
            float s = sc[g] * a.scale;
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
    const KVT *vrow[DEC_TK];
#pragma unroll
    for (int tl = 0; tl < DEC_TK; tl++)
      vrow[tl] = kv_row(kv, a.block_table, a.max_blocks, b, t0 + min(tl, ntok - 1), 1, kvh, a.nKV, a.tpb, D);
#pragma unroll
    for (int j = 0; j < DPT; j++) {
      const int d = tid + j * DEC_THREADS;
      if (d < D) {
        float v[DEC_TK];
#pragma unroll
        for (int tl = 0; tl < DEC_TK; tl++) v[tl] = tl < ntok ? to_f<KVT>(vrow[tl][d]) : 0.f;
#pragma unroll
        for (int g = 0; g < GMAX; g++) {
          if (g < G) {
            float s = acc[g][j] * alpha_s[g];
#pragma unroll
            for (int tl = 0; tl < DEC_TK; tl++) s += (tl < ntok ? ps[g][tl] : 0.f) * v[tl];
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
        const float inv = l_s[g] > 0.f ? 1.f / l_s[g] : 0.f;
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
  // the serial merge, as first verified on the GPU
  for (int g = 0; g < G; g++) {
    const int64_t rec0 = ((int64_t)b * a.nH + kvh * G + g) * a.nsplit;
    float M = -INFINITY;
    for (int sp = 0; sp < ns; sp++) M = fmaxf(M, __ldcg(&pml[(rec0 + sp) * 2]));
    float Lsum = 0.f;
    for (int sp = 0; sp < ns; sp++) {
      const float m = __ldcg(&pml[(rec0 + sp) * 2]);
      if (m != -INFINITY) Lsum += __ldcg(&pml[(rec0 + sp) * 2 + 1]) * expf(m - M);
    }
    const float inv = Lsum > 0.f ? 1.f / Lsum : 0.f;
    for (int d = tid; d < D; d += DEC_THREADS) {
      float o = 0.f;
      for (int sp = 0; sp < ns; sp++) {
        const float m = __ldcg(&pml[(rec0 + sp) * 2]);
        if (m != -INFINITY) o += __ldcg(&po[(rec0 + sp) * D + d]) * expf(m - M);
      }
      store_out(a, ((int64_t)b * a.nH + kvh * G + g) * D + d, o * inv);
    }
  }
  if (tid == 0) *counter = 0u;  // ready for the next launch (graph replays)
}
