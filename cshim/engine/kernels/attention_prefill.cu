/*
 * attention_prefill.cu: prefill attention over the paged KV cache (TRTB_OP_ATTN_PREFILL): packed
 * query tokens of several sequences. Grid (query tile, query head): a tile of 64 query rows walks
 * the K/V tiles of its context in shared memory and keeps per-row running max/sum/output.
 * 16-bit KV runs on tensor cores (WMMA, fp32 accumulation); f32 KV (the runtime's exact numerics
 * mode) and 1-byte quantized KV (INT8 / FP8 values, dequantized by kv_scale, which the SIMT kernel
 * folds into the score scale and the output normalisation) on the SIMT kernel with fp32 math.
 * Cache layout and masks: attention.cuh.
 *
 * Napkin maths (8B shape, 2048-token prefill): 17 G FMA of attention against ~16 T FMA of GEMMs,
 * so SIMT attention costs a few percent of a prefill.
 */
#include <mma.h>

#include "attention.cuh"
#include "attention_prefill.cuh"

using namespace nvcuda;

// ----------------------------------------------------------------------------------------------
// CUDA kernels

// ----------------------------------------------------------------------------------------------
// prefill

#define PF_THREADS 256
#define PF_BK 32

template <int D> struct PfCfg {
  static constexpr int BQ = 64;              // query rows per tile (the host builds tiles of 64)
  static constexpr int RPT = BQ / 32;       // rows per thread (threads in groups of 8 share rows)
  static constexpr int DPT = D / 8;         // output dims per thread
  // A thread's output dims: NVG groups of VW consecutive dims, group jj at (tid & 7) * VW + jj * 8 * VW
  // (float4 groups where D % 32 == 0: D = 32, 64, 96, 128, 256; float2 groups for D = 80).
  static constexpr int VW = D % 32 == 0 ? 4 : 2;
  static constexpr int NVG = D / (8 * VW);
  static constexpr int QLD = D + 1;         // padded row of Q (conflict-free column reads)
  static constexpr int KLD = PF_BK + 4;     // Kt row: BK keys, float4-aligned
  static constexpr int PLD = PF_BK + 1;
  static constexpr size_t smem_floats = (size_t)BQ * QLD + (size_t)D * KLD + (size_t)PF_BK * D + (size_t)BQ * PLD;
  static_assert(D % 16 == 0 && D >= 32 && D <= 256, "PfCfg: head size a multiple of 16 in [32, 256]");
  static_assert(NVG * VW == DPT, "PfCfg: every output dim owned by exactly one thread of a row group");
  // Vs (float4/float2 reads) starts VW-aligned: BQ * QLD + D * KLD floats in
  static_assert(((size_t)BQ * QLD + (size_t)D * KLD) % 4 == 0, "PfCfg: Vs 16-byte aligned");
};

template <int D, typename KVT, typename OutT>
__global__ void __launch_bounds__(PF_THREADS) attn_prefill_kernel(AttnPrefillArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  using C = PfCfg<D>;
  constexpr int BQ = C::BQ, RPT = C::RPT, DPT = C::DPT, BK = PF_BK, VW = C::VW, NVG = C::NVG;
  extern __shared__ float sm[];
  float *Qs = sm;                           // [BQ][QLD]
  float *Kt = Qs + BQ * C::QLD;             // [D][KLD]   (transposed K tile)
  float *Vs = Kt + D * C::KLD;              // [BK][D]
  float *Ps = Vs + BK * D;                  // [BQ][PLD]

  const int tile = blockIdx.x, h = blockIdx.y;
  const int tid = threadIdx.x;
  const int G = a.nH / a.nKV, kvh = h / G;
  const int seq = a.tiles[2 * tile], q0 = a.tiles[2 * tile + 1];
  const int qbeg = a.cu_q[seq], nq = a.cu_q[seq + 1] - qbeg;
  const int p0 = a.pos0[seq];
  const int nrows = min(BQ, nq - q0);
  const KVT *kv = static_cast<const KVT *>(a.kv);

  for (int idx = tid; idx < BQ * D; idx += PF_THREADS) {
    const int r = idx / D, d = idx % D;
    Qs[r * C::QLD + d] = r < nrows ? a.q[((int64_t)(qbeg + q0 + r) * a.nH + h) * D + d] : 0.f;
  }

  const int rg = tid >> 3;      // row group
  const int c0 = (tid & 7) * 4; // first of this thread's 4 key columns
  int rows[RPT];
#pragma unroll
  for (int i = 0; i < RPT; i++) rows[i] = rg * RPT + i;
  float m_i[RPT], l_i[RPT], acc[RPT][DPT];
#pragma unroll
  for (int i = 0; i < RPT; i++) {
    m_i[i] = -INFINITY;
    l_i[i] = 0.f;
#pragma unroll
    for (int j = 0; j < DPT; j++) acc[i][j] = 0.f;
  }

  const int qfirst = p0 + q0, qlast = p0 + q0 + nrows - 1;
  int kbeg = a.window > 0 ? max(0, qfirst - a.window + 1) : 0;
  kbeg = (kbeg / BK) * BK;
  const int kend = qlast + 1;
  const float qk_scale = a.scale * a.kv_scale;  // K dequantization folded into the score scale

  for (int k0 = kbeg; k0 < kend; k0 += BK) {
    __syncthreads();  // previous tile's readers are done (and Q is loaded on the first pass)
    for (int idx = tid; idx < BK * (D / 8); idx += PF_THREADS) {
      const int kk = idx / (D / 8), dd = (idx % (D / 8)) * 8;
      const int t = k0 + kk;
      float kf[8], vf[8];
      if (t < kend) {
        load8<KVT>(kv_row(kv, a.block_table, a.max_blocks, seq, t, 0, kvh, a.nKV, a.tpb, D) + dd, kf);
        load8<KVT>(kv_row(kv, a.block_table, a.max_blocks, seq, t, 1, kvh, a.nKV, a.tpb, D) + dd, vf);
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++) kf[e] = vf[e] = 0.f;
      }
#pragma unroll
      for (int e = 0; e < 8; e++) {
        Kt[(dd + e) * C::KLD + kk] = kf[e];
        Vs[kk * D + dd + e] = vf[e];
      }
    }
    __syncthreads();

    float s[RPT][4];
#pragma unroll
    for (int i = 0; i < RPT; i++)
#pragma unroll
      for (int j = 0; j < 4; j++) s[i][j] = 0.f;
#pragma unroll 8
    for (int d = 0; d < D; d++) {
      const float4 k4 = *reinterpret_cast<const float4 *>(&Kt[d * C::KLD + c0]);
#pragma unroll
      for (int i = 0; i < RPT; i++) {
        const float qv = Qs[rows[i] * C::QLD + d];
        s[i][0] += qv * k4.x;
        s[i][1] += qv * k4.y;
        s[i][2] += qv * k4.z;
        s[i][3] += qv * k4.w;
      }
    }

#pragma unroll
    for (int i = 0; i < RPT; i++) {
      const int qp = p0 + q0 + rows[i];
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int kp = k0 + c0 + j;
        float v = s[i][j] * qk_scale;
        if (a.softcap > 0.f) v = tanhf(v / a.softcap) * a.softcap;
        const bool ok = rows[i] < nrows && kp <= qp && kp < kend && (a.window <= 0 || kp > qp - a.window);
        v = ok ? v : -INFINITY;
        s[i][j] = v;
        mx = fmaxf(mx, v);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
      const float m_new = fmaxf(m_i[i], mx);
      float alpha, rs = 0.f;
      if (m_new == -INFINITY) {
        alpha = 1.f;
#pragma unroll
        for (int j = 0; j < 4; j++) s[i][j] = 0.f;
      } else {
        alpha = m_i[i] == -INFINITY ? 0.f : expf(m_i[i] - m_new);
#pragma unroll
        for (int j = 0; j < 4; j++) {
          s[i][j] = s[i][j] == -INFINITY ? 0.f : expf(s[i][j] - m_new);
          rs += s[i][j];
        }
      }
      rs += __shfl_xor_sync(0xffffffffu, rs, 1);
      rs += __shfl_xor_sync(0xffffffffu, rs, 2);
      rs += __shfl_xor_sync(0xffffffffu, rs, 4);
      l_i[i] = l_i[i] * alpha + rs;
      m_i[i] = m_new;
#pragma unroll
      for (int j = 0; j < DPT; j++) acc[i][j] *= alpha;
#pragma unroll
      for (int j = 0; j < 4; j++) Ps[rows[i] * C::PLD + c0 + j] = s[i][j];
    }
    __syncthreads();

    const int dbase = (tid & 7) * VW;
#pragma unroll 4
    for (int k = 0; k < BK; k++) {
      float p[RPT];
#pragma unroll
      for (int i = 0; i < RPT; i++) p[i] = Ps[rows[i] * C::PLD + k];
#pragma unroll
      for (int jj = 0; jj < NVG; jj++) {
        if constexpr (VW == 4) {
          const float4 v = *reinterpret_cast<const float4 *>(&Vs[k * D + dbase + jj * 32]);
#pragma unroll
          for (int i = 0; i < RPT; i++) {
            acc[i][jj * 4 + 0] += p[i] * v.x;
            acc[i][jj * 4 + 1] += p[i] * v.y;
            acc[i][jj * 4 + 2] += p[i] * v.z;
            acc[i][jj * 4 + 3] += p[i] * v.w;
          }
        } else {
          const float2 v = *reinterpret_cast<const float2 *>(&Vs[k * D + dbase + jj * 16]);
#pragma unroll
          for (int i = 0; i < RPT; i++) {
            acc[i][jj * 2 + 0] += p[i] * v.x;
            acc[i][jj * 2 + 1] += p[i] * v.y;
          }
        }
      }
    }
  }

  const int dbase = (tid & 7) * VW;
#pragma unroll
  for (int i = 0; i < RPT; i++) {
    if (rows[i] >= nrows) continue;
    const float inv = l_i[i] > 0.f ? a.kv_scale / l_i[i] : 0.f;  // V dequantization folded in
    OutT *o = static_cast<OutT *>(a.out) + ((int64_t)(qbeg + q0 + rows[i]) * a.nH + h) * D;
#pragma unroll
    for (int jj = 0; jj < NVG; jj++)
#pragma unroll
      for (int e = 0; e < VW; e++) o[dbase + jj * 8 * VW + e] = from_f<OutT>(acc[i][jj * VW + e] * inv);
  }
}


// ----------------------------------------------------------------------------------------------
// prefill on tensor cores (16-bit KV): WMMA bf16/fp16 16x16x16 tiles, fp32 accumulation.
// 4 warps, each owning 16 of the tile's 64 query rows; K/V tiles of 64 keys in shared memory.
// S = Q K^T per warp (fragments → shared f32), online softmax on the rows (two lanes per row),
// P rounded to 16 bits, O += P V with the O tile kept in shared f32 (rescaled per row between
// key tiles, since WMMA's fragment layout is opaque). Q is rounded to the KV dtype, as
// TensorRT-LLM's FMHA does.

#define TC_BQ 64
#define TC_BK 64
#define TC_THREADS 128

template <int D> struct TcCfg {
  static constexpr int QLD = D + 8;        // 16-bit elements (pads rows by 16 bytes)
  static constexpr int SLD = TC_BK + 4;    // f32
  static constexpr int PLD = TC_BK + 8;    // 16-bit
  static constexpr int OLD = D + 4;        // f32
  static constexpr size_t q_off = 0;
  static constexpr size_t k_off = q_off + (size_t)TC_BQ * QLD * 2;
  static constexpr size_t v_off = k_off + (size_t)TC_BK * QLD * 2;
  static constexpr size_t s_off = v_off + (size_t)TC_BK * QLD * 2;
  static constexpr size_t p_off = s_off + (size_t)TC_BQ * SLD * 4;
  static constexpr size_t o_off = p_off + (size_t)TC_BQ * PLD * 2;
  static constexpr size_t r_off = o_off + (size_t)TC_BQ * OLD * 4;
  static constexpr size_t bytes = r_off + (size_t)TC_BQ * 3 * 4;
  // WMMA: 16 x 16 x 16 steps over D (D = 32, 64, 80, 96, 128, 256 take 2 … 16 of them), ldm a
  // multiple of 8 (16-bit) / 4 (f32) elements, every fragment pointer 32-byte aligned: row
  // offsets are multiples of 16 rows (16 * LD * size, 32-byte multiples), column offsets multiples of
  // 16 elements, and each array starts 32-byte aligned. uint4 stores of K/V need 16-byte rows.
  static_assert(D % 16 == 0 && D >= 32 && D <= 256, "TcCfg: head size a multiple of 16 in [32, 256]");
  static_assert(QLD % 8 == 0 && PLD % 8 == 0 && SLD % 4 == 0 && OLD % 4 == 0, "TcCfg: WMMA leading dimensions");
  static_assert(k_off % 32 == 0 && v_off % 32 == 0 && s_off % 32 == 0 && p_off % 32 == 0 && o_off % 32 == 0 && r_off % 16 == 0,
                "TcCfg: 32-byte aligned tiles");
  static_assert(bytes <= 227 * 1024, "TcCfg: shared memory per block");
};

template <int D, typename T, typename OutT>
__global__ void __launch_bounds__(TC_THREADS) attn_prefill_tc_kernel(AttnPrefillArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  using C = TcCfg<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  T *Qs = reinterpret_cast<T *>(smem + C::q_off);
  T *Ks = reinterpret_cast<T *>(smem + C::k_off);
  T *Vs = reinterpret_cast<T *>(smem + C::v_off);
  float *Ss = reinterpret_cast<float *>(smem + C::s_off);
  T *Ps = reinterpret_cast<T *>(smem + C::p_off);
  float *Os = reinterpret_cast<float *>(smem + C::o_off);
  float *m_r = reinterpret_cast<float *>(smem + C::r_off);
  float *l_r = m_r + TC_BQ;
  float *al_r = l_r + TC_BQ;

  const int tile = blockIdx.x, h = blockIdx.y;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int G = a.nH / a.nKV, kvh = h / G;
  const int seq = a.tiles[2 * tile], q0 = a.tiles[2 * tile + 1];
  const int qbeg = a.cu_q[seq], nq = a.cu_q[seq + 1] - qbeg;
  const int p0 = a.pos0[seq];
  const int nrows = min(TC_BQ, nq - q0);
  const T *kv = static_cast<const T *>(a.kv);

  // Q tile (f32 → T), O = 0, row stats
  for (int idx = tid; idx < TC_BQ * (D / 4); idx += TC_THREADS) {
    const int r = idx / (D / 4), d = (idx % (D / 4)) * 4;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < nrows) v = *reinterpret_cast<const float4 *>(&a.q[((int64_t)(qbeg + q0 + r) * a.nH + h) * D + d]);
    T *qd = &Qs[r * C::QLD + d];
    qd[0] = from_f<T>(v.x);
    qd[1] = from_f<T>(v.y);
    qd[2] = from_f<T>(v.z);
    qd[3] = from_f<T>(v.w);
  }
  for (int idx = tid; idx < TC_BQ * D; idx += TC_THREADS) Os[(idx / D) * C::OLD + idx % D] = 0.f;
  if (tid < TC_BQ) {
    m_r[tid] = -INFINITY;
    l_r[tid] = 0.f;
  }

  const int qfirst = p0 + q0, qlast = p0 + q0 + nrows - 1;
  int kbeg = a.window > 0 ? max(0, qfirst - a.window + 1) : 0;
  kbeg = (kbeg / TC_BK) * TC_BK;
  const int kend = qlast + 1;
  const int r = warp * 16 + (lane >> 1);  // this lane's softmax row
  const int half = lane & 1;
  const int qp = p0 + q0 + r;

  for (int k0 = kbeg; k0 < kend; k0 += TC_BK) {
    __syncthreads();  // previous tile consumed (and Q/O initialised on the first pass)
    for (int idx = tid; idx < TC_BK * (D / 8); idx += TC_THREADS) {
      const int kk = idx / (D / 8), dd = (idx % (D / 8)) * 8;
      const int t = k0 + kk;
      uint4 kq = make_uint4(0, 0, 0, 0), vq = make_uint4(0, 0, 0, 0);
      if (t < kend) {
        kq = *reinterpret_cast<const uint4 *>(kv_row(kv, a.block_table, a.max_blocks, seq, t, 0, kvh, a.nKV, a.tpb, D) + dd);
        vq = *reinterpret_cast<const uint4 *>(kv_row(kv, a.block_table, a.max_blocks, seq, t, 1, kvh, a.nKV, a.tpb, D) + dd);
      }
      *reinterpret_cast<uint4 *>(&Ks[kk * C::QLD + dd]) = kq;
      *reinterpret_cast<uint4 *>(&Vs[kk * C::QLD + dd]) = vq;
    }
    __syncthreads();

    // S (this warp's 16 rows x 64 keys) = Q K^T
#pragma unroll
    for (int j = 0; j < TC_BK / 16; j++) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kd = 0; kd < D / 16; kd++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
        wmma::load_matrix_sync(fa, Qs + warp * 16 * C::QLD + kd * 16, C::QLD);
        wmma::load_matrix_sync(fb, Ks + j * 16 * C::QLD + kd * 16, C::QLD);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(Ss + warp * 16 * C::SLD + j * 16, acc, C::SLD, wmma::mem_row_major);
    }
    __syncwarp();

    // online softmax: two lanes per row, 32 keys each
    {
      float sv[32];
      float mx = -INFINITY;
#pragma unroll
      for (int c = 0; c < 32; c++) {
        const int col = half * 32 + c;
        const int kp = k0 + col;
        float v = Ss[r * C::SLD + col] * a.scale;
        if (a.softcap > 0.f) v = tanhf(v / a.softcap) * a.softcap;
        const bool ok = r < nrows && kp <= qp && kp < kend && (a.window <= 0 || kp > qp - a.window);
        v = ok ? v : -INFINITY;
        sv[c] = v;
        mx = fmaxf(mx, v);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      const float m_old = m_r[r];
      const float m_new = fmaxf(m_old, mx);
      float sum = 0.f;
#pragma unroll
      for (int c = 0; c < 32; c++) {
        const float pv = (m_new == -INFINITY || sv[c] == -INFINITY) ? 0.f : expf(sv[c] - m_new);
        const T pt = from_f<T>(pv);
        Ps[r * C::PLD + half * 32 + c] = pt;
        sum += to_f<T>(pt);  // the sum of what P·V will use
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      const float alpha = m_new == -INFINITY ? 1.f : (m_old == -INFINITY ? 0.f : expf(m_old - m_new));
      __syncwarp();
      if (half == 0) {
        l_r[r] = l_r[r] * alpha + sum;
        m_r[r] = m_new;
        al_r[r] = alpha;
      }
      // rescale this row's O (each lane of the pair takes half of D)
      for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++) Os[r * C::OLD + d] *= alpha;
    }
    __syncwarp();

    // O += P V
#pragma unroll
    for (int j = 0; j < D / 16; j++) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, Os + warp * 16 * C::OLD + j * 16, C::OLD, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < TC_BK / 16; kk++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, Ps + warp * 16 * C::PLD + kk * 16, C::PLD);
        wmma::load_matrix_sync(fb, Vs + kk * 16 * C::QLD + j * 16, C::QLD);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(Os + warp * 16 * C::OLD + j * 16, acc, C::OLD, wmma::mem_row_major);
    }
    __syncwarp();
  }
  __syncthreads();

  // normalise and write this tile's rows
  for (int idx = tid; idx < TC_BQ * D; idx += TC_THREADS) {
    const int rr = idx / D, d = idx % D;
    if (rr >= nrows) continue;
    const float l = l_r[rr];
    const float o = l > 0.f ? Os[rr * C::OLD + d] / l : 0.f;
    static_cast<OutT *>(a.out)[((int64_t)(qbeg + q0 + rr) * a.nH + h) * D + d] = from_f<OutT>(o);
  }
}


/* The tensor-core prefill with the O tile kept in registers (WMMA accumulators) and a lazy
 * softmax rescale: rows keep a reference max and only rescale O when a new score exceeds it by
 * more than 8 (probabilities stay ≤ e^8, safe in bf16/fp16 and f32), so O goes through shared
 * memory only on those rare rescales and once at the end. Q fragments stay in registers. D ≤ 128. */
template <int D, typename T, typename OutT>
__global__ void __launch_bounds__(TC_THREADS) attn_prefill_tc2_kernel(AttnPrefillArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  using C = TcCfg<D>;
  constexpr int NF = D / 16;
  constexpr float LOG2E = 1.4426950408889634f;
  extern __shared__ __align__(128) unsigned char smem[];
  T *Qs = reinterpret_cast<T *>(smem + C::q_off);
  T *Ks = reinterpret_cast<T *>(smem + C::k_off);
  T *Vs = reinterpret_cast<T *>(smem + C::v_off);
  float *Ss = reinterpret_cast<float *>(smem + C::s_off);
  T *Ps = reinterpret_cast<T *>(smem + C::p_off);
  float *Os = reinterpret_cast<float *>(smem + C::o_off);
  float *m_r = reinterpret_cast<float *>(smem + C::r_off);
  float *l_r = m_r + TC_BQ;
  float *al_r = l_r + TC_BQ;

  const int tile = blockIdx.x, h = blockIdx.y;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int G = a.nH / a.nKV, kvh = h / G;
  const int seq = a.tiles[2 * tile], q0 = a.tiles[2 * tile + 1];
  const int qbeg = a.cu_q[seq], nq = a.cu_q[seq + 1] - qbeg;
  const int p0 = a.pos0[seq];
  const int nrows = min(TC_BQ, nq - q0);
  const T *kv = static_cast<const T *>(a.kv);

  for (int idx = tid; idx < TC_BQ * (D / 4); idx += TC_THREADS) {
    const int r = idx / (D / 4), d = (idx % (D / 4)) * 4;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < nrows) v = *reinterpret_cast<const float4 *>(&a.q[((int64_t)(qbeg + q0 + r) * a.nH + h) * D + d]);
    T *qd = &Qs[r * C::QLD + d];
    qd[0] = from_f<T>(v.x);
    qd[1] = from_f<T>(v.y);
    qd[2] = from_f<T>(v.z);
    qd[3] = from_f<T>(v.w);
  }
  if (tid < TC_BQ) {
    m_r[tid] = -INFINITY;
    l_r[tid] = 0.f;
  }
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qf[NF];
#pragma unroll
  for (int kd = 0; kd < NF; kd++) wmma::load_matrix_sync(qf[kd], Qs + warp * 16 * C::QLD + kd * 16, C::QLD);
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> of[NF];
#pragma unroll
  for (int j = 0; j < NF; j++) wmma::fill_fragment(of[j], 0.f);

  const int qfirst = p0 + q0, qlast = p0 + q0 + nrows - 1;
  int kbeg = a.window > 0 ? max(0, qfirst - a.window + 1) : 0;
  kbeg = (kbeg / TC_BK) * TC_BK;
  const int kend = qlast + 1;
  const int r = warp * 16 + (lane >> 1);
  const int half = lane & 1;
  const int qp = p0 + q0 + r;

  for (int k0 = kbeg; k0 < kend; k0 += TC_BK) {
    __syncthreads();
    for (int idx = tid; idx < TC_BK * (D / 8); idx += TC_THREADS) {
      const int kk = idx / (D / 8), dd = (idx % (D / 8)) * 8;
      const int t = k0 + kk;
      uint4 kq = make_uint4(0, 0, 0, 0), vq = make_uint4(0, 0, 0, 0);
      if (t < kend) {
        kq = *reinterpret_cast<const uint4 *>(kv_row(kv, a.block_table, a.max_blocks, seq, t, 0, kvh, a.nKV, a.tpb, D) + dd);
        vq = *reinterpret_cast<const uint4 *>(kv_row(kv, a.block_table, a.max_blocks, seq, t, 1, kvh, a.nKV, a.tpb, D) + dd);
      }
      *reinterpret_cast<uint4 *>(&Ks[kk * C::QLD + dd]) = kq;
      *reinterpret_cast<uint4 *>(&Vs[kk * C::QLD + dd]) = vq;
    }
    __syncthreads();

#pragma unroll
    for (int j = 0; j < TC_BK / 16; j++) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kd = 0; kd < NF; kd++) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
        wmma::load_matrix_sync(fb, Ks + j * 16 * C::QLD + kd * 16, C::QLD);
        wmma::mma_sync(acc, qf[kd], fb, acc);
      }
      wmma::store_matrix_sync(Ss + warp * 16 * C::SLD + j * 16, acc, C::SLD, wmma::mem_row_major);
    }
    __syncwarp();

    bool need = false;
    {
      float sv[32];
      float mx = -INFINITY;
#pragma unroll
      for (int c = 0; c < 32; c++) {
        const int col = half * 32 + c;
        const int kp = k0 + col;
        float v = Ss[r * C::SLD + col] * a.scale;
        if (a.softcap > 0.f) v = tanhf(v / a.softcap) * a.softcap;
        const bool ok = r < nrows && kp <= qp && kp < kend && (a.window <= 0 || kp > qp - a.window);
        v = ok ? v : -INFINITY;
        sv[c] = v;
        mx = fmaxf(mx, v);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      const float m_old = m_r[r];
      float m_use = m_old, alpha = 1.f;
      if (m_old == -INFINITY) m_use = mx;  // O and l are still zero
      else if (mx > m_old + 8.f) {
        need = true;
        m_use = mx;
        alpha = exp2f((m_old - mx) * LOG2E);
      }
      float sum = 0.f;
#pragma unroll
      for (int c = 0; c < 32; c++) {
        const float pv = (m_use == -INFINITY || sv[c] == -INFINITY) ? 0.f : exp2f((sv[c] - m_use) * LOG2E);
        const T pt = from_f<T>(pv);
        Ps[r * C::PLD + half * 32 + c] = pt;
        sum += to_f<T>(pt);
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      __syncwarp();
      if (half == 0) {
        l_r[r] = l_r[r] * alpha + sum;
        m_r[r] = m_use;
        al_r[r] = alpha;
      }
    }
    if (__any_sync(0xffffffffu, need)) {  // rare: rescale this warp's O rows through shared memory
#pragma unroll
      for (int j = 0; j < NF; j++) wmma::store_matrix_sync(Os + warp * 16 * C::OLD + j * 16, of[j], C::OLD, wmma::mem_row_major);
      __syncwarp();
      const float al = al_r[r];
      for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++) Os[r * C::OLD + d] *= al;
      __syncwarp();
#pragma unroll
      for (int j = 0; j < NF; j++) wmma::load_matrix_sync(of[j], Os + warp * 16 * C::OLD + j * 16, C::OLD, wmma::mem_row_major);
    }
    __syncwarp();

#pragma unroll
    for (int kk = 0; kk < TC_BK / 16; kk++) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
      wmma::load_matrix_sync(fa, Ps + warp * 16 * C::PLD + kk * 16, C::PLD);
#pragma unroll
      for (int j = 0; j < NF; j++) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
        wmma::load_matrix_sync(fb, Vs + kk * 16 * C::QLD + j * 16, C::QLD);
        wmma::mma_sync(of[j], fa, fb, of[j]);
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int j = 0; j < NF; j++) wmma::store_matrix_sync(Os + warp * 16 * C::OLD + j * 16, of[j], C::OLD, wmma::mem_row_major);
  __syncthreads();

  for (int idx = tid; idx < TC_BQ * D; idx += TC_THREADS) {
    const int rr = idx / D, d = idx % D;
    if (rr >= nrows) continue;
    const float l = l_r[rr];
    const float o = l > 0.f ? Os[rr * C::OLD + d] / l : 0.f;
    static_cast<OutT *>(a.out)[((int64_t)(qbeg + q0 + rr) * a.nH + h) * D + d] = from_f<OutT>(o);
  }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

template <int D, typename T, typename OutT>
static int32_t prefill_tc_launch(cudaStream_t s, const AttnPrefillArgs &a) {
  dim3 grid((unsigned)a.n_tiles, (unsigned)a.nH);
  if constexpr (D <= 128) (void)trtbe_launch(attn_prefill_tc2_kernel<D, T, OutT>, dim3(grid), dim3(TC_THREADS), TcCfg<D>::bytes, s, a);
  else (void)trtbe_launch(attn_prefill_tc_kernel<D, T, OutT>, dim3(grid), dim3(TC_THREADS), TcCfg<D>::bytes, s, a);
  TRTB_CUDA_CHECK_LAUNCH("attn_prefill_tc_kernel");
  return TRTB_OK;
}

template <int D, typename T>
static int32_t prefill_tc_out(cudaStream_t s, const AttnPrefillArgs &a) {
  switch (a.out_dtype) {
    case TRTB_DTYPE_BF16: return prefill_tc_launch<D, T, __nv_bfloat16>(s, a);
    case TRTB_DTYPE_F16: return prefill_tc_launch<D, T, __half>(s, a);
    case TRTB_DTYPE_F32: return prefill_tc_launch<D, T, float>(s, a);
    default: return trtb__fail(TRTB_ERR_DTYPE, "attention: out dtype %d", a.out_dtype);
  }
}

template <typename T>
static int32_t prefill_tc_d(cudaStream_t s, const AttnPrefillArgs &a) {
  switch (a.D) {
    case 32: return prefill_tc_out<32, T>(s, a);
    case 64: return prefill_tc_out<64, T>(s, a);
    case 80: return prefill_tc_out<80, T>(s, a);
    case 96: return prefill_tc_out<96, T>(s, a);
    case 128: return prefill_tc_out<128, T>(s, a);
    case 256: return prefill_tc_out<256, T>(s, a);
    default: return trtb__fail(TRTB_ERR_UNSUPPORTED, "attention: head size %d (supported: " TRTBE_ATTN_HEAD_SIZES ")", a.D);
  }
}

template <int D, typename T, typename OutT>
static int32_t set_tc_smem(void) {
  // only the kernel prefill_tc_launch uses for this D (tc2 up to 128, tc above)
  if constexpr (D <= 128)
    TRTB_CUDA_TRY(cudaFuncSetAttribute(attn_prefill_tc2_kernel<D, T, OutT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)TcCfg<D>::bytes));
  else
    TRTB_CUDA_TRY(cudaFuncSetAttribute(attn_prefill_tc_kernel<D, T, OutT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)TcCfg<D>::bytes));
  return TRTB_OK;
}

template <typename T>
static int32_t set_tc_smem_t(void) {
  int32_t st;
#define TRTBE_TC_SMEM(D)                                                     \
  if ((st = set_tc_smem<D, T, __nv_bfloat16>()) != TRTB_OK) return st;       \
  if ((st = set_tc_smem<D, T, __half>()) != TRTB_OK) return st;              \
  if ((st = set_tc_smem<D, T, float>()) != TRTB_OK) return st;
  TRTBE_TC_SMEM(32)
  TRTBE_TC_SMEM(64)
  TRTBE_TC_SMEM(80)
  TRTBE_TC_SMEM(96)
  TRTBE_TC_SMEM(128)
  TRTBE_TC_SMEM(256)
#undef TRTBE_TC_SMEM
  return TRTB_OK;
}

template <int D, typename KVT, typename OutT>
static int32_t prefill_launch(cudaStream_t s, const AttnPrefillArgs &a) {
  dim3 grid((unsigned)a.n_tiles, (unsigned)a.nH);
  (void)trtbe_launch(attn_prefill_kernel<D, KVT, OutT>, dim3(grid), dim3(PF_THREADS), PfCfg<D>::smem_floats * sizeof(float), s, a);
  TRTB_CUDA_CHECK_LAUNCH("attn_prefill_kernel");
  return TRTB_OK;
}

template <int D, typename KVT>
static int32_t prefill_out(cudaStream_t s, const AttnPrefillArgs &a) {
  switch (a.out_dtype) {
    case TRTB_DTYPE_BF16: return prefill_launch<D, KVT, __nv_bfloat16>(s, a);
    case TRTB_DTYPE_F16: return prefill_launch<D, KVT, __half>(s, a);
    case TRTB_DTYPE_F32: return prefill_launch<D, KVT, float>(s, a);
    default: return trtb__fail(TRTB_ERR_DTYPE, "attention: out dtype %d", a.out_dtype);
  }
}

template <typename KVT>
static int32_t prefill_d(cudaStream_t s, const AttnPrefillArgs &a) {
  switch (a.D) {
    case 32: return prefill_out<32, KVT>(s, a);
    case 64: return prefill_out<64, KVT>(s, a);
    case 80: return prefill_out<80, KVT>(s, a);
    case 96: return prefill_out<96, KVT>(s, a);
    case 128: return prefill_out<128, KVT>(s, a);
    case 256: return prefill_out<256, KVT>(s, a);
    default: return trtb__fail(TRTB_ERR_UNSUPPORTED, "attention: head size %d (supported: " TRTBE_ATTN_HEAD_SIZES ")", a.D);
  }
}

int32_t trtbe_attn_prefill(cudaStream_t s, const AttnPrefillArgs &a) {
  if (a.n_tiles <= 0) return TRTB_OK;
  if (a.nKV <= 0 || a.nH % a.nKV) return trtb__fail(TRTB_ERR_INVALID_ARG, "attention: %d heads over %d KV heads", a.nH, a.nKV);
  if (a.tpb <= 0) return trtb__fail(TRTB_ERR_INVALID_ARG, "attention: tokens_per_block %d", a.tpb);
  const bool quant = a.kv_dtype == TRTB_DTYPE_I8 || a.kv_dtype == TRTB_DTYPE_F8_E4M3;
  if (quant ? !(a.kv_scale > 0.f && a.kv_scale < INFINITY) : a.kv_scale != 1.f)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "attention: kv scale %g for kv dtype %d (a finite scale > 0 for I8/F8_E4M3, else 1)", (double)a.kv_scale, a.kv_dtype);
  switch (a.kv_dtype) {
    case TRTB_DTYPE_BF16: return prefill_tc_d<__nv_bfloat16>(s, a);  // tensor cores
    case TRTB_DTYPE_F16: return prefill_tc_d<__half>(s, a);
    case TRTB_DTYPE_F32: return prefill_d<float>(s, a);  // exact numerics: f32 SIMT
    case TRTB_DTYPE_I8: return prefill_d<int8_t>(s, a);  // quantized KV: f32 SIMT on the stored values
    case TRTB_DTYPE_F8_E4M3: return prefill_d<__nv_fp8_e4m3>(s, a);
    default: return trtb__fail(TRTB_ERR_DTYPE, "attention: kv dtype %d is not F32/F16/BF16/I8/F8_E4M3", a.kv_dtype);
  }
}

template <int D, typename KVT, typename OutT>
static int32_t set_smem(void) {
  TRTB_CUDA_TRY(cudaFuncSetAttribute(attn_prefill_kernel<D, KVT, OutT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)(PfCfg<D>::smem_floats * sizeof(float))));
  return TRTB_OK;
}

template <typename KVT>
static int32_t set_smem_kv(void) {
  int32_t st;
#define TRTBE_SMEM(D)                                                       \
  if ((st = set_smem<D, KVT, __nv_bfloat16>()) != TRTB_OK) return st;       \
  if ((st = set_smem<D, KVT, __half>()) != TRTB_OK) return st;              \
  if ((st = set_smem<D, KVT, float>()) != TRTB_OK) return st;
  TRTBE_SMEM(32)
  TRTBE_SMEM(64)
  TRTBE_SMEM(80)
  TRTBE_SMEM(96)
  TRTBE_SMEM(128)
  TRTBE_SMEM(256)
#undef TRTBE_SMEM
  return TRTB_OK;
}

int32_t trtbe_attn_prefill_init(void) {
  int32_t st = set_smem_kv<float>();
  if (st != TRTB_OK) return st;
  if ((st = set_smem_kv<int8_t>()) != TRTB_OK) return st;
  if ((st = set_smem_kv<__nv_fp8_e4m3>()) != TRTB_OK) return st;
  if ((st = set_tc_smem_t<__nv_bfloat16>()) != TRTB_OK) return st;
  return set_tc_smem_t<__half>();
}
