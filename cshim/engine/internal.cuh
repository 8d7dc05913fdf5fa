/*
 * internal.cuh: what libtrtb_engine's translation units share: the argument structs the op
 * interpreter fills for each launcher, element conversions, and block reductions. Not ABI.
 */
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include <utility>

#include "cuda_common.cuh"
#include "trtb_engine.h"

// ----------------------------------------------------------------------------------------------
// programmatic dependent launch (Hopper): a kernel launched with trtbe_launch may start while the
// previous kernel of the stream finishes; it must call pdl_wait() before touching memory that
// kernel wrote, and calls pdl_trigger() once its own dependents may be launched. Both are no-ops
// before sm_90 and for kernels launched without the attribute. TRTB_ENGINE_PDL=0 turns it off.

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* Let the next kernel launch now when this grid is small enough to be resident at once (its
 * blocks then wait in pdl_wait without taking slots this grid still needs); larger grids trigger
 * implicitly as their blocks exit. */
__device__ __forceinline__ void pdl_trigger_if_one_wave() {
  if (gridDim.x * gridDim.y * gridDim.z <= 264u) pdl_trigger();
}

/* Whether launches carry the programmatic-serialization attribute (env TRTB_ENGINE_PDL, default on). */
bool trtbe_pdl_enabled(void);
/* TRTB_ENGINE_LEGACY=1: use the first GPU-verified variants of the kernels that were later tuned
 * (decode merge, RMSNorm, gated activation, tensor-core prefill attention). */
bool trtbe_legacy(void);

template <typename... KArgs, typename... Args>
static inline cudaError_t trtbe_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                       Args &&...args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = trtbe_pdl_enabled() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

#define TRTBE_LAUNCH(kernel, grid, block, smem, stream, ...) (void)trtbe_launch(kernel, grid, block, smem, stream, __VA_ARGS__)

// ----------------------------------------------------------------------------------------------
// element conversions

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }

/* 8 16-bit elements packed in a uint4, to floats. */
template <typename T> __device__ __forceinline__ void unpack8(const uint4 &u, float *f);
template <> __device__ __forceinline__ void unpack8<__nv_bfloat16>(const uint4 &u, float *f) {
  const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 v = __bfloat1622float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}
template <> __device__ __forceinline__ void unpack8<__half>(const uint4 &u, float *f) {
  const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 v = __half22float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

/* 8 consecutive elements at p (16-byte aligned for 16-bit types, 32 for float) to floats. */
template <typename T> __device__ __forceinline__ void load8(const T *p, float *f) {
  unpack8<T>(*reinterpret_cast<const uint4 *>(p), f);
}
template <> __device__ __forceinline__ void load8<float>(const float *p, float *f) {
  const float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
  f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
  f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}

// ----------------------------------------------------------------------------------------------
// reductions

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* Sum over the block, returned to every thread. `red` is >= 32 floats of shared memory; the
 * function synchronizes before and after using it, so it can be called repeatedly. */
__device__ __forceinline__ float block_sum(float v, float *red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float r = lane < nw ? red[lane] : 0.f;
  r = warp_sum(r);
  return r;
}

// ----------------------------------------------------------------------------------------------
// launcher arguments (filled by the op interpreter in api.cu from program words)

struct EmbedArgs {
  const int32_t *ids;
  const void *table;
  int32_t dtype;
  int64_t rows, vocab_start;
  int32_t H;
  float scale;
  float *out;
  int64_t T;
};

struct AddNormArgs {
  float *res;
  const float *delta;
  int64_t delta_ld;
  const float *delta_bias, *delta_norm, *norm_w;
  float eps;
  void *out;
  int32_t out_dtype;
  int32_t H;
  int64_t T;
};

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
};

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
  int32_t legacy; /* set by the launcher from trtbe_legacy() */
};

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
};

struct GatedActArgs {
  const void *in;
  int32_t in_dtype;
  const float *bias;
  void *out;
  int32_t out_dtype;
  int64_t I, T;
  int32_t act;
};

struct SampleArgs {
  const float *logits;
  int64_t ld;
  int32_t V;
  const trtb_engine_sample_params *params;
  int32_t *out;
  int32_t R;
};

struct MoeRouteArgs {
  const void *x;
  int32_t x_dtype;
  const float *router;
  int32_t E, H, k;
  int32_t *ids;
  float *w;
  int64_t T;
};

// ----------------------------------------------------------------------------------------------
// launchers (kernels/*.cu); each checks its launch and returns a status

int32_t trtbe_embed(cudaStream_t s, const EmbedArgs &a);
int32_t trtbe_add_norm(cudaStream_t s, const AddNormArgs &a);
int32_t trtbe_qkv_rope(cudaStream_t s, const QkvRopeArgs &a);
int32_t trtbe_attn_decode(cudaStream_t s, const AttnDecodeArgs &a);
int32_t trtbe_attn_prefill(cudaStream_t s, const AttnPrefillArgs &a);
int32_t trtbe_gated_act(cudaStream_t s, const GatedActArgs &a);
int32_t trtbe_gather_rows(cudaStream_t s, const void *src, void *dst, const int32_t *idx, int64_t R, int64_t row_bytes);
int32_t trtbe_scatter_add(cudaStream_t s, const float *y, float *out, const int32_t *idx, const float *w, int64_t R, int64_t H);
int32_t trtbe_softcap(cudaStream_t s, float *x, int64_t n, float cap);
int32_t trtbe_sample(cudaStream_t s, const SampleArgs &a);
int32_t trtbe_moe_route(cudaStream_t s, const MoeRouteArgs &a);
/* GEMV y[M,N] = x[M,K] . w[N,K]^T for M <= 8; rows = rows per warp (1, 2, 4). x is w's dtype, or
 * F32 (then y must be F32): the exact path, no rounding of the activations. */
int32_t trtbe_gemv(cudaStream_t s, const void *w, const void *x, void *y, int32_t M, int32_t N, int32_t K,
                   int32_t w_dtype, int32_t x_dtype, int32_t y_dtype, int64_t ldx, int64_t ldy, int32_t rows);
/* True when trtbe_gemv supports this call (shape, alignment, dtypes). */
bool trtbe_gemv_ok(const void *w, const void *x, int32_t M, int32_t K, int32_t w_dtype, int32_t x_dtype, int32_t y_dtype,
                   int64_t ldx, int32_t rows);
/* hi = round(x), lo = round(x - hi) in dtype (F16/BF16), rows of K at ld K: x = hi + lo to ~16 bits. */
int32_t trtbe_split16(cudaStream_t s, const float *x, int64_t ldx, void *hi, void *lo, int64_t M, int64_t K, int32_t dtype);
/* Weight-only GEMM (gemm_wo.cu) for M <= 64: y = (x . q^T) * scale, q in the tiled layout of
 * bits 8/4; x (and xlo, the low half on the exact path, or NULL) in a_dtype; y F32 or a_dtype;
 * rt = row tiles per block (1, 2, 4; lowered to what M allows), plus TRTBE_WO_PREFETCH to fetch
 * activations a stage ahead (M <= 8 only). */
#define TRTBE_WO_PREFETCH 8
int32_t trtbe_wo_gemm(cudaStream_t s, const void *w, const float *scale, const void *x, const void *xlo, void *y, int32_t M,
                      int32_t N, int32_t K, int32_t bits, int32_t a_dtype, int32_t y_dtype, int64_t ldx, int64_t ldy, int32_t rt);
/* Largest rt trtbe_wo_gemm takes for M rows (0: M > 64). */
int trtbe_wo_max_rt(int32_t m);
/* K padded to the k tile of the layout (32 int8, 64 int4 values). */
int32_t trtbe_wo_kp(int32_t k, int32_t bits);
/* Tiled weights to row-major a_dtype [N, K]: q * scale (scaled != 0) or q. */
int32_t trtbe_wo_dequant(cudaStream_t s, const void *w, const float *scale, void *out, int32_t N, int32_t K, int32_t bits,
                         int32_t a_dtype, int32_t scaled);
/* y[m, n] *= scale[n] (f32). */
int32_t trtbe_scale_cols(cudaStream_t s, float *y, const float *scale, int32_t M, int32_t N, int64_t ldy);
/* Fill n 16-bit elements with random values in [-scale, scale) (benchmarks and tuning). */
int32_t trtbe_fill_random(cudaStream_t s, void *p, int64_t n, int32_t dtype, uint64_t seed, float scale);
/* Raise the dynamic shared memory limits of the kernels that need it (once per device). */
int32_t trtbe_kernels_init(void);

/* Elapsed milliseconds between two events (already synchronized). */
static inline float trtbe_ms(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0.f;
  if (cudaEventElapsedTime(&ms, a, b) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1.f;
  }
  return ms;
}

#define TRTBE_DTYPE_OK16(d) ((d) == TRTB_DTYPE_F16 || (d) == TRTB_DTYPE_BF16)
