/*
 * elementwise.cu: the small per-token kernels of a forward pass: embedding, residual add fused
 * with RMSNorm, q/k/v post-processing (bias, q/k norm, RoPE, paged-cache write), gated
 * activation, row gather/scatter, soft-cap, MoE routing, random fill.
 *
 * Napkin maths (Llama-3-8B, one decode token): each kernel moves a few tens of KB, so they are
 * latency-bound (a few µs each); they matter only through their count, which CUDA graphs hide.
 */
#include "../internal.cuh"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

template <typename T>
__global__ void embed_kernel(EmbedArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t t = blockIdx.x;
  const int64_t id = (int64_t)a.ids[t] - a.vocab_start;
  const bool ok = id >= 0 && id < a.rows;
  const T *row = static_cast<const T *>(a.table) + (ok ? id : 0) * a.H;
  float *out = a.out + t * a.H;
  for (int i = threadIdx.x; i < a.H; i += blockDim.x) out[i] = ok ? to_f<T>(row[i]) * a.scale : 0.f;
}

/* One block per token; the row lives in dynamic shared memory (H floats). Each thread touches only
 * its own indices between reductions, so only the reductions synchronize. */
template <typename OutT>
__global__ void add_norm_kernel(AddNormArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  extern __shared__ float row[];
  __shared__ float red[32];
  const int64_t t = blockIdx.x;
  const int H = a.H;
  float *res = a.res + t * H;
  float ss = 0.f;
  if (a.delta) {
    const float *d = a.delta + t * a.delta_ld;
    float dss = 0.f;
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
      float v = d[i] + (a.delta_bias ? a.delta_bias[i] : 0.f);
      row[i] = v;
      dss += v * v;
    }
    if (a.delta_norm) {
      dss = block_sum(dss, red);
      const float r = 1.f / sqrtf(dss / H + a.eps);
      for (int i = threadIdx.x; i < H; i += blockDim.x) row[i] = row[i] * r * a.delta_norm[i];
    }
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
      float v = res[i] + row[i];
      res[i] = v;
      row[i] = v;
      ss += v * v;
    }
  } else {
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
      float v = res[i];
      row[i] = v;
      ss += v * v;
    }
  }
  if (!a.out) return;
  ss = block_sum(ss, red);
  const float r = 1.f / sqrtf(ss / H + a.eps);
  OutT *out = static_cast<OutT *>(a.out) + t * H;
  for (int i = threadIdx.x; i < H; i += blockDim.x) out[i] = from_f<OutT>(row[i] * r * (a.norm_w ? a.norm_w[i] : 1.f));
}


/* The same, with every input of the row loaded into registers up front (one memory round trip
 * before the first reduction): EPT elements per thread, blockDim = ceil(H / EPT). */
template <typename OutT, int EPT>
__global__ void __launch_bounds__(1024) add_norm_reg_kernel(AddNormArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  __shared__ float red[32];
  const int64_t t = blockIdx.x;
  const int H = a.H;
  float *res = a.res + t * H;
  const float *d = a.delta ? a.delta + t * a.delta_ld : nullptr;
  float r[EPT], x[EPT], w[EPT], db[EPT], dn[EPT];
#pragma unroll
  for (int e = 0; e < EPT; e++) {
    const int i = threadIdx.x + e * blockDim.x;
    const bool in = i < H;
    r[e] = in ? res[i] : 0.f;
    x[e] = in && d ? d[i] : 0.f;
    db[e] = in && a.delta_bias ? a.delta_bias[i] : 0.f;
    dn[e] = in && a.delta_norm ? a.delta_norm[i] : 0.f;
    w[e] = in ? (a.norm_w ? a.norm_w[i] : 1.f) : 0.f;
  }
  if (d) {
    float dss = 0.f;
#pragma unroll
    for (int e = 0; e < EPT; e++) {
      x[e] += db[e];
      dss += x[e] * x[e];
    }
    if (a.delta_norm) {
      dss = block_sum(dss, red);
      const float s = 1.f / sqrtf(dss / H + a.eps);
#pragma unroll
      for (int e = 0; e < EPT; e++) x[e] = x[e] * s * dn[e];
    }
  }
  float ss = 0.f;
#pragma unroll
  for (int e = 0; e < EPT; e++) {
    const int i = threadIdx.x + e * blockDim.x;
    if (d) {
      r[e] += x[e];
      if (i < H) res[i] = r[e];
    }
    ss += r[e] * r[e];
  }
  if (!a.out) return;
  ss = block_sum(ss, red);
  const float s = 1.f / sqrtf(ss / H + a.eps);
  OutT *out = static_cast<OutT *>(a.out) + t * H;
#pragma unroll
  for (int e = 0; e < EPT; e++) {
    const int i = threadIdx.x + e * blockDim.x;
    if (i < H) out[i] = from_f<OutT>(r[e] * s * w[e]);
  }
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
#pragma unroll
  for (int e = 0; e < ROPE_MAX_EPL; e++) {
    const int i = lane + 32 * e;
    float v = i < D ? s[i] : 0.f;
    if ((isq || isk) && i < a.rot) {  // i < rot <= D
      const int j = i < half ? i : i - half;
      const float ang = p * a.inv_freq[j];
      const float c = cosf(ang), sn = sinf(ang);
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
      if (i < D) dst[i] = from_f<KVT>(o[e]);
    }
  }
}

__device__ __forceinline__ float act_fn(float v, int act) {
  if (act == 0) return v / (1.f + expf(-v));
  const float k0 = 0.7978845608028654f;  // sqrt(2/pi)
  return 0.5f * v * (1.f + tanhf(k0 * (v + 0.044715f * v * v * v)));
}

template <typename InT, typename OutT>
__global__ void gated_act_kernel(GatedActArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t n = a.I * a.T;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = idx / a.I, i = idx % a.I;
    const InT *row = static_cast<const InT *>(a.in) + t * 2 * a.I;
    float up = to_f<InT>(row[i]), g = to_f<InT>(row[a.I + i]);
    if (a.bias) {
      up += a.bias[i];
      g += a.bias[a.I + i];
    }
    static_cast<OutT *>(a.out)[idx] = from_f<OutT>(up * act_fn(g, a.act));
  }
}


/* 8 consecutive outputs per thread with 16-byte loads and stores (16-bit in and out, I % 8 == 0). */
template <typename T>
__global__ void gated_act_vec8_kernel(GatedActArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t I8 = a.I / 8, n = I8 * a.T;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = idx / I8, i = (idx % I8) * 8;
    const T *row = static_cast<const T *>(a.in) + t * 2 * a.I;
    float up[8], g[8];
    unpack8<T>(*reinterpret_cast<const uint4 *>(row + i), up);
    unpack8<T>(*reinterpret_cast<const uint4 *>(row + a.I + i), g);
    uint4 o;
    T *ov = reinterpret_cast<T *>(&o);
#pragma unroll
    for (int e = 0; e < 8; e++) {
      float u = up[e], v = g[e];
      if (a.bias) {
        u += a.bias[i + e];
        v += a.bias[a.I + i + e];
      }
      ov[e] = from_f<T>(u * act_fn(v, a.act));
    }
    *reinterpret_cast<uint4 *>(static_cast<T *>(a.out) + t * a.I + i) = o;
  }
}

__global__ void gather_rows_kernel(const uint8_t *src, uint8_t *dst, const int32_t *idx, int64_t R, int64_t row_bytes) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t r = blockIdx.x;
  const uint8_t *s = src + (int64_t)idx[r] * row_bytes;
  uint8_t *d = dst + r * row_bytes;
  if (row_bytes % 16 == 0 && ((uintptr_t)s % 16 == 0) && ((uintptr_t)d % 16 == 0)) {
    for (int64_t i = threadIdx.x; i < row_bytes / 16; i += blockDim.x)
      reinterpret_cast<uint4 *>(d)[i] = reinterpret_cast<const uint4 *>(s)[i];
  } else {
    for (int64_t i = threadIdx.x; i < row_bytes; i += blockDim.x) d[i] = s[i];
  }
}

__global__ void scatter_add_kernel(const float *y, float *out, const int32_t *idx, const float *w, int64_t H) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t r = blockIdx.x;
  const float wr = w[r];
  const float *src = y + r * H;
  float *dst = out + (int64_t)idx[r] * H;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) dst[i] += wr * src[i];
}

__global__ void softcap_kernel(float *x, int64_t n, float cap) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    x[i] = tanhf(x[i] / cap) * cap;
}

#define MOE_MAX_E 256
#define MOE_MAX_K 16
/* One block (128 threads) per token: router logits by warp dot products, then softmax / top-k /
 * renormalise on one thread in double (E is small), matching the CPU runner's order of ties. */
template <typename XT>
__global__ void __launch_bounds__(128) moe_route_kernel(MoeRouteArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  __shared__ float logits[MOE_MAX_E];
  const int64_t t = blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const XT *x = static_cast<const XT *>(a.x) + t * a.H;
  for (int e = warp; e < a.E; e += 4) {
    const float *w = a.router + (int64_t)e * a.H;
    float acc = 0.f;
    for (int i = lane; i < a.H; i += 32) acc += to_f<XT>(x[i]) * w[i];
    acc = warp_sum(acc);
    if (lane == 0) logits[e] = acc;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  double mx = -INFINITY;
  for (int e = 0; e < a.E; e++) mx = fmax(mx, (double)logits[e]);
  double p[MOE_MAX_E];
  double sum = 0;
  for (int e = 0; e < a.E; e++) {
    p[e] = exp((double)logits[e] - mx);
    sum += p[e];
  }
  for (int e = 0; e < a.E; e++) p[e] /= sum;
  int sel[MOE_MAX_K];
  double norm = 0;
  for (int j = 0; j < a.k; j++) {
    int best = -1;
    for (int e = 0; e < a.E; e++) {
      bool taken = false;
      for (int q = 0; q < j; q++) taken |= sel[q] == e;
      if (!taken && (best < 0 || p[e] > p[best])) best = e;
    }
    sel[j] = best;
    norm += p[best];
  }
  for (int j = 0; j < a.k; j++) {
    a.ids[t * a.k + j] = sel[j];
    a.w[t * a.k + j] = (float)(p[sel[j]] / norm);
  }
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

template <typename T>
__global__ void fill_random_kernel(T *p, int64_t n, uint64_t seed, float scale) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const uint64_t r = splitmix64(seed ^ (uint64_t)i * 0xD1B54A32D192ED03ull);
    const float u = (float)(r >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    p[i] = from_f<T>((2.f * u - 1.f) * scale);
  }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

static unsigned grid_for(int64_t n, int threads) {
  int64_t g = (n + threads - 1) / threads;
  if (g < 1) g = 1;
  return (unsigned)(g < 65535 * 16 ? g : 65535 * 16);
}

int32_t trtbe_embed(cudaStream_t s, const EmbedArgs &a) {
  if (a.T <= 0) return TRTB_OK;
  const int threads = a.H >= 1024 ? 256 : 128;
  switch (a.dtype) {
    case TRTB_DTYPE_BF16: (void)trtbe_launch(embed_kernel<__nv_bfloat16>, dim3((unsigned)a.T), dim3(threads), 0, s, a); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(embed_kernel<__half>, dim3((unsigned)a.T), dim3(threads), 0, s, a); break;
    case TRTB_DTYPE_F32: (void)trtbe_launch(embed_kernel<float>, dim3((unsigned)a.T), dim3(threads), 0, s, a); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "embed: table dtype %d is not F32/F16/BF16", a.dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("embed_kernel");
  return TRTB_OK;
}

template <typename OutT>
static int32_t add_norm_reg(cudaStream_t s, const AddNormArgs &a) {
  const int H = a.H;
  if (H <= 4096) (void)trtbe_launch(add_norm_reg_kernel<OutT, 4>, dim3((unsigned)a.T), dim3((unsigned)((H / 4 + 31) / 32 * 32)), 0, s, a);
  else (void)trtbe_launch(add_norm_reg_kernel<OutT, 8>, dim3((unsigned)a.T), dim3((unsigned)((H / 8 + 31) / 32 * 32)), 0, s, a);
  TRTB_CUDA_CHECK_LAUNCH("add_norm_reg_kernel");
  return TRTB_OK;
}

int32_t trtbe_add_norm(cudaStream_t s, const AddNormArgs &a) {
  if (a.T <= 0) return TRTB_OK;
  if (a.H > 16384) return trtb__fail(TRTB_ERR_UNSUPPORTED, "add_norm: hidden size %d > 16384", a.H);
  if (!trtbe_legacy() && a.H % 4 == 0 && a.H <= 8192) {
    switch (a.out ? a.out_dtype : TRTB_DTYPE_BF16) {
      case TRTB_DTYPE_BF16: return add_norm_reg<__nv_bfloat16>(s, a);
      case TRTB_DTYPE_F16: return add_norm_reg<__half>(s, a);
      case TRTB_DTYPE_F32: return add_norm_reg<float>(s, a);
      default: return trtb__fail(TRTB_ERR_DTYPE, "add_norm: out dtype %d is not F32/F16/BF16", a.out_dtype);
    }
  }
  const size_t smem = (size_t)a.H * sizeof(float);
  const int threads = a.H >= 2048 ? 512 : 256;
  switch (a.out ? a.out_dtype : TRTB_DTYPE_BF16) {
    case TRTB_DTYPE_BF16: (void)trtbe_launch(add_norm_kernel<__nv_bfloat16>, dim3((unsigned)a.T), dim3(threads), smem, s, a); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(add_norm_kernel<__half>, dim3((unsigned)a.T), dim3(threads), smem, s, a); break;
    case TRTB_DTYPE_F32: (void)trtbe_launch(add_norm_kernel<float>, dim3((unsigned)a.T), dim3(threads), smem, s, a); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "add_norm: out dtype %d is not F32/F16/BF16", a.out_dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("add_norm_kernel");
  return TRTB_OK;
}

int32_t trtbe_qkv_rope(cudaStream_t s, const QkvRopeArgs &a) {
  if (a.T <= 0) return TRTB_OK;
  if (a.D > 32 * ROPE_MAX_EPL || a.D <= 0) return trtb__fail(TRTB_ERR_UNSUPPORTED, "qkv_rope: head size %d (max 256)", a.D);
  if (a.rot < 0 || a.rot > a.D || a.rot % 2) return trtb__fail(TRTB_ERR_INVALID_ARG, "qkv_rope: rotary dim %d for head size %d", a.rot, a.D);
  const int heads = a.nH + 2 * a.nKV;
  dim3 grid((unsigned)a.T, (unsigned)((heads + 3) / 4));
  const size_t smem = 4 * (size_t)a.D * sizeof(float);
  switch (a.kv_dtype) {
    case TRTB_DTYPE_BF16: (void)trtbe_launch(qkv_rope_kernel<__nv_bfloat16>, dim3(grid), dim3(128), smem, s, a); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(qkv_rope_kernel<__half>, dim3(grid), dim3(128), smem, s, a); break;
    case TRTB_DTYPE_F32: (void)trtbe_launch(qkv_rope_kernel<float>, dim3(grid), dim3(128), smem, s, a); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "qkv_rope: kv dtype %d is not F32/F16/BF16", a.kv_dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("qkv_rope_kernel");
  return TRTB_OK;
}

template <typename InT>
static int32_t gated_act_out(cudaStream_t s, const GatedActArgs &a, unsigned grid) {
  switch (a.out_dtype) {
    case TRTB_DTYPE_BF16: (void)trtbe_launch(gated_act_kernel<InT, __nv_bfloat16>, dim3(grid), dim3(256), 0, s, a); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(gated_act_kernel<InT, __half>, dim3(grid), dim3(256), 0, s, a); break;
    case TRTB_DTYPE_F32: (void)trtbe_launch(gated_act_kernel<InT, float>, dim3(grid), dim3(256), 0, s, a); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "gated_act: out dtype %d", a.out_dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("gated_act_kernel");
  return TRTB_OK;
}

int32_t trtbe_gated_act(cudaStream_t s, const GatedActArgs &a) {
  if (a.T <= 0 || a.I <= 0) return TRTB_OK;
  if (a.act != 0 && a.act != 1) return trtb__fail(TRTB_ERR_INVALID_ARG, "gated_act: activation %d (0 silu, 1 gelu_tanh)", a.act);
  if (!trtbe_legacy() && a.I % 8 == 0 && a.in_dtype == a.out_dtype && TRTBE_DTYPE_OK16(a.in_dtype) && ((uintptr_t)a.in % 16) == 0 &&
      ((uintptr_t)a.out % 16) == 0) {
    const unsigned grid = grid_for(a.I / 8 * a.T, 256);
    if (a.in_dtype == TRTB_DTYPE_BF16) (void)trtbe_launch(gated_act_vec8_kernel<__nv_bfloat16>, dim3(grid), dim3(256), 0, s, a);
    else (void)trtbe_launch(gated_act_vec8_kernel<__half>, dim3(grid), dim3(256), 0, s, a);
    TRTB_CUDA_CHECK_LAUNCH("gated_act_vec8_kernel");
    return TRTB_OK;
  }
  const unsigned grid = grid_for(a.I * a.T, 256);
  switch (a.in_dtype) {
    case TRTB_DTYPE_BF16: return gated_act_out<__nv_bfloat16>(s, a, grid);
    case TRTB_DTYPE_F16: return gated_act_out<__half>(s, a, grid);
    case TRTB_DTYPE_F32: return gated_act_out<float>(s, a, grid);
    default: return trtb__fail(TRTB_ERR_DTYPE, "gated_act: in dtype %d", a.in_dtype);
  }
}

int32_t trtbe_gather_rows(cudaStream_t s, const void *src, void *dst, const int32_t *idx, int64_t R, int64_t row_bytes) {
  if (R <= 0 || row_bytes <= 0) return TRTB_OK;
  (void)trtbe_launch(gather_rows_kernel, dim3((unsigned)R), dim3(256), 0, s, (const uint8_t *)src, (uint8_t *)dst, idx, R, row_bytes);
  TRTB_CUDA_CHECK_LAUNCH("gather_rows_kernel");
  return TRTB_OK;
}

int32_t trtbe_scatter_add(cudaStream_t s, const float *y, float *out, const int32_t *idx, const float *w, int64_t R, int64_t H) {
  if (R <= 0) return TRTB_OK;
  (void)trtbe_launch(scatter_add_kernel, dim3((unsigned)R), dim3(256), 0, s, y, out, idx, w, H);
  TRTB_CUDA_CHECK_LAUNCH("scatter_add_kernel");
  return TRTB_OK;
}

int32_t trtbe_softcap(cudaStream_t s, float *x, int64_t n, float cap) {
  if (n <= 0) return TRTB_OK;
  if (!(cap > 0.f)) return trtb__fail(TRTB_ERR_INVALID_ARG, "softcap: cap must be positive, got %g", (double)cap);
  (void)trtbe_launch(softcap_kernel, dim3(grid_for(n, 256)), dim3(256), 0, s, x, n, cap);
  TRTB_CUDA_CHECK_LAUNCH("softcap_kernel");
  return TRTB_OK;
}

int32_t trtbe_moe_route(cudaStream_t s, const MoeRouteArgs &a) {
  if (a.T <= 0) return TRTB_OK;
  if (a.E < 1 || a.E > MOE_MAX_E || a.k < 1 || a.k > MOE_MAX_K || a.k > a.E)
    return trtb__fail(TRTB_ERR_UNSUPPORTED, "moe_route: %d experts, top-%d (max %d experts, top-%d)", a.E, a.k, MOE_MAX_E, MOE_MAX_K);
  switch (a.x_dtype) {
    case TRTB_DTYPE_BF16: (void)trtbe_launch(moe_route_kernel<__nv_bfloat16>, dim3((unsigned)a.T), dim3(128), 0, s, a); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(moe_route_kernel<__half>, dim3((unsigned)a.T), dim3(128), 0, s, a); break;
    case TRTB_DTYPE_F32: (void)trtbe_launch(moe_route_kernel<float>, dim3((unsigned)a.T), dim3(128), 0, s, a); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "moe_route: x dtype %d", a.x_dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("moe_route_kernel");
  return TRTB_OK;
}

int32_t trtbe_fill_random(cudaStream_t s, void *p, int64_t n, int32_t dtype, uint64_t seed, float scale) {
  if (n <= 0) return TRTB_OK;
  switch (dtype) {
    case TRTB_DTYPE_BF16: (void)trtbe_launch(fill_random_kernel<__nv_bfloat16>, dim3(grid_for(n, 256)), dim3(256), 0, s, (__nv_bfloat16 *)p, n, seed, scale); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(fill_random_kernel<__half>, dim3(grid_for(n, 256)), dim3(256), 0, s, (__half *)p, n, seed, scale); break;
    case TRTB_DTYPE_F32: (void)trtbe_launch(fill_random_kernel<float>, dim3(grid_for(n, 256)), dim3(256), 0, s, (float *)p, n, seed, scale); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "fill_random: dtype %d", dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("fill_random_kernel");
  return TRTB_OK;
}

int32_t trtbe_elementwise_init(void) {
  // add_norm may need up to 64 KiB of dynamic shared memory (H = 16384).
  TRTB_CUDA_TRY(cudaFuncSetAttribute(add_norm_kernel<__nv_bfloat16>, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
  TRTB_CUDA_TRY(cudaFuncSetAttribute(add_norm_kernel<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
  TRTB_CUDA_TRY(cudaFuncSetAttribute(add_norm_kernel<float>, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
  return TRTB_OK;
}
