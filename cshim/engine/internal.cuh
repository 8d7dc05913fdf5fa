/*
 * internal.cuh: what libtrtb_engine's translation units share: programmatic dependent launch,
 * element conversions, block reductions and small host helpers. Each op's argument struct and
 * launcher are in kernels/<op>.cuh. Not ABI.
 */
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
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
/* 1-byte elements of a quantized KV cache (INT8 / FP8_E4M3): the stored value, exactly (the
 * kernels apply the layer's scale, see kv_store and attention.cuh). */
template <> __device__ __forceinline__ float to_f<int8_t>(int8_t v) { return (float)v; }
template <> __device__ __forceinline__ float to_f<__nv_fp8_e4m3>(__nv_fp8_e4m3 v) { return static_cast<float>(v); }

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

/* 1-byte types: 8 bytes (uint2), 8-byte aligned. */
template <> __device__ __forceinline__ void load8<int8_t>(const int8_t *p, float *f) {
  const uint2 u = *reinterpret_cast<const uint2 *>(p);
  const char4 a = *reinterpret_cast<const char4 *>(&u.x), b = *reinterpret_cast<const char4 *>(&u.y);
  f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
  f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}
template <> __device__ __forceinline__ void load8<__nv_fp8_e4m3>(const __nv_fp8_e4m3 *p, float *f) {
  const uint2 u = *reinterpret_cast<const uint2 *>(p);
  const float4 a = static_cast<float4>(*reinterpret_cast<const __nv_fp8x4_e4m3 *>(&u.x));
  const float4 b = static_cast<float4>(*reinterpret_cast<const __nv_fp8x4_e4m3 *>(&u.y));
  f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
  f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}

/* 4 consecutive elements at p (8-byte aligned for 16-bit types, 16 for float, 4 for 1-byte types) to floats. */
template <typename T> __device__ __forceinline__ void load4(const T *p, float *f);
template <> __device__ __forceinline__ void load4<__nv_bfloat16>(const __nv_bfloat16 *p, float *f) {
  const uint2 u = *reinterpret_cast<const uint2 *>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.y));
  f[0] = a.x; f[1] = a.y; f[2] = b.x; f[3] = b.y;
}
template <> __device__ __forceinline__ void load4<__half>(const __half *p, float *f) {
  const uint2 u = *reinterpret_cast<const uint2 *>(p);
  const float2 a = __half22float2(*reinterpret_cast<const __half2 *>(&u.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2 *>(&u.y));
  f[0] = a.x; f[1] = a.y; f[2] = b.x; f[3] = b.y;
}
template <> __device__ __forceinline__ void load4<float>(const float *p, float *f) {
  const float4 a = *reinterpret_cast<const float4 *>(p);
  f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
}

template <> __device__ __forceinline__ void load4<int8_t>(const int8_t *p, float *f) {
  const char4 a = *reinterpret_cast<const char4 *>(p);
  f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
}
template <> __device__ __forceinline__ void load4<__nv_fp8_e4m3>(const __nv_fp8_e4m3 *p, float *f) {
  const float4 a = static_cast<float4>(*reinterpret_cast<const __nv_fp8x4_e4m3 *>(p));
  f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
}

/* 2 consecutive elements at p (4-byte aligned for 16-bit types, 8 for float, 2 for 1-byte types) to floats. */
template <typename T> __device__ __forceinline__ void load2(const T *p, float *f);
template <> __device__ __forceinline__ void load2<__nv_bfloat16>(const __nv_bfloat16 *p, float *f) {
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(p));
  f[0] = a.x; f[1] = a.y;
}
template <> __device__ __forceinline__ void load2<__half>(const __half *p, float *f) {
  const float2 a = __half22float2(*reinterpret_cast<const __half2 *>(p));
  f[0] = a.x; f[1] = a.y;
}
template <> __device__ __forceinline__ void load2<float>(const float *p, float *f) {
  const float2 a = *reinterpret_cast<const float2 *>(p);
  f[0] = a.x; f[1] = a.y;
}

template <> __device__ __forceinline__ void load2<int8_t>(const int8_t *p, float *f) {
  const char2 a = *reinterpret_cast<const char2 *>(p);
  f[0] = a.x; f[1] = a.y;
}
template <> __device__ __forceinline__ void load2<__nv_fp8_e4m3>(const __nv_fp8_e4m3 *p, float *f) {
  const float2 a = static_cast<float2>(*reinterpret_cast<const __nv_fp8x2_e4m3 *>(p));
  f[0] = a.x; f[1] = a.y;
}

/* W (8, 4 or 2) consecutive elements at p (aligned to W elements) to floats. */
template <int W, typename T> __device__ __forceinline__ void loadw(const T *p, float *f) {
  static_assert(W == 8 || W == 4 || W == 2, "loadw: width 8, 4 or 2");
  if constexpr (W == 8) load8<T>(p, f);
  else if constexpr (W == 4) load4<T>(p, f);
  else load2<T>(p, f);
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
// launchers: each op's argument struct (filled by the op interpreter in api.cu from program words)
// and launcher are declared in its kernels/<op>.cuh; each checks its launch and returns a status.

/* Raise the dynamic shared memory limits of the kernels that need it (once per device). */
int32_t trtbe_kernels_init(void);

/* Blocks for a grid-stride loop over n items (at least 1, at most 65535 * 16). */
static inline unsigned trtbe_grid_for(int64_t n, int threads) {
  int64_t g = (n + threads - 1) / threads;
  if (g < 1) g = 1;
  return (unsigned)(g < 65535 * 16 ? g : 65535 * 16);
}

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
