/*
 * fp8.cu: activation quantization for FP8 GEMMs (TRTB_OP_ACT_FP8): x / scale → e4m3, round to
 * nearest even, saturated (finite) — bit for bit the CPU runner's simulation (quant-sim.ts: the
 * f32 quotient, then e4m3 RNE; |v| beyond 448 clamps to ±448).
 *
 * Napkin maths (Llama-3-8B, one decode token): 4–28 KB in, a quarter of that out: latency-bound
 * (~2 µs); prefill of 2,048 tokens: 2048 × 14336 × 2 B = 59 MB read at ~3.5 TB/s ≈ 17 µs.
 */
#include <algorithm>

#include <cuda_fp8.h>

#include "fp8.cuh"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

/* grid (M, ceil(K / 1024)), 256 threads, 4 elements per thread. */
template <typename T>
__global__ void __launch_bounds__(256) quant_fp8_kernel(const T *x, int64_t ldx, __nv_fp8_storage_t *out, int64_t K, float scale) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t m = blockIdx.x;
  const int64_t k0 = ((int64_t)blockIdx.y * 256 + threadIdx.x) * 4;
  const T *row = x + m * ldx;
  __nv_fp8_storage_t *o = out + m * K;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int64_t k = k0 + j;
    if (k < K) o[k] = __nv_cvt_float_to_fp8(__fdiv_rn(to_f<T>(row[k]), scale), __NV_SATFINITE, __NV_E4M3);
  }
}

__global__ void __launch_bounds__(256) fp8_to_bf16_kernel(const __nv_fp8_storage_t *src, __nv_bfloat16 *dst, int64_t n) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const __half_raw h = __nv_cvt_fp8_to_halfraw(src[i], __NV_E4M3);
    dst[i] = __float2bfloat16_rn(__half2float(__half(h)));
  }
}

/* 16 e4m3 values (one 16-byte load) as floats. */
__device__ __forceinline__ void unpack16_e4m3(const uint4 v, float *f) {
  const __nv_fp8x2_storage_t *p = reinterpret_cast<const __nv_fp8x2_storage_t *>(&v);
#pragma unroll
  for (int i = 0; i < 8; i++) {
    const float2 t = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(p[i], __NV_E4M3)));
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

/* The weight-streaming GEMV of gemv.cu for e4m3 weights and inputs: each warp owns ROWS rows of w
 * and walks K in 16-byte loads (16 values per lane per step), 4 steps in flight; weights read once
 * (evict-first). Napkin maths: Llama-3-8B FP8 decode reads 7.5 GB per token: ~1.8 ms at 4.2 TB/s. */
#define GEMV8_THREADS 256
#define GEMV8_UNROLL 4
template <typename OutT, int M, int ROWS>
__global__ void __launch_bounds__(GEMV8_THREADS) gemv_fp8_kernel(const uint8_t *__restrict__ w, const uint8_t *__restrict__ x, OutT *__restrict__ y,
                                                                 int N, int K, int64_t ldy, float alpha) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int warp = blockIdx.x * (GEMV8_THREADS / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  const int n0 = warp * ROWS;
  if (n0 >= N) return;
  const int K16 = K / 16;
  const uint4 *wr[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; r++) wr[r] = reinterpret_cast<const uint4 *>(w + (int64_t)min(n0 + r, N - 1) * K);
  const uint4 *xr = reinterpret_cast<const uint4 *>(x);
  float acc[ROWS][M];
#pragma unroll
  for (int r = 0; r < ROWS; r++)
#pragma unroll
    for (int m = 0; m < M; m++) acc[r][m] = 0.f;
  int k = lane;
  for (; k + 32 * (GEMV8_UNROLL - 1) < K16; k += 32 * GEMV8_UNROLL) {
    uint4 wv[GEMV8_UNROLL][ROWS];
#pragma unroll
    for (int u = 0; u < GEMV8_UNROLL; u++)
#pragma unroll
      for (int r = 0; r < ROWS; r++) wv[u][r] = __ldcs(wr[r] + k + 32 * u);
#pragma unroll
    for (int u = 0; u < GEMV8_UNROLL; u++)
#pragma unroll
      for (int m = 0; m < M; m++) {
        float xf[16];
        unpack16_e4m3(__ldg(xr + (int64_t)m * K16 + k + 32 * u), xf);
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
          float wf[16];
          unpack16_e4m3(wv[u][r], wf);
#pragma unroll
          for (int e = 0; e < 16; e++) acc[r][m] += wf[e] * xf[e];
        }
      }
  }
  for (; k < K16; k += 32)
#pragma unroll
    for (int m = 0; m < M; m++) {
      float xf[16];
      unpack16_e4m3(__ldg(xr + (int64_t)m * K16 + k), xf);
#pragma unroll
      for (int r = 0; r < ROWS; r++) {
        float wf[16];
        unpack16_e4m3(__ldcs(wr[r] + k), wf);
#pragma unroll
        for (int e = 0; e < 16; e++) acc[r][m] += wf[e] * xf[e];
      }
    }
  pdl_trigger();
#pragma unroll
  for (int r = 0; r < ROWS; r++)
#pragma unroll
    for (int m = 0; m < M; m++) acc[r][m] = warp_sum(acc[r][m]);
  if (lane == 0) {
#pragma unroll
    for (int r = 0; r < ROWS; r++)
      if (n0 + r < N)
#pragma unroll
        for (int m = 0; m < M; m++) y[m * ldy + n0 + r] = from_f<OutT>(acc[r][m] * alpha);
  }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

template <typename OutT, int M, int ROWS>
static void gemv8_launch(cudaStream_t s, const void *w, const void *x, void *y, int N, int K, int64_t ldy, float alpha) {
  const int warps = (N + ROWS - 1) / ROWS;
  const unsigned blocks = (unsigned)((warps + GEMV8_THREADS / 32 - 1) / (GEMV8_THREADS / 32));
  (void)trtbe_launch(gemv_fp8_kernel<OutT, M, ROWS>, dim3(blocks), dim3(GEMV8_THREADS), 0, s, (const uint8_t *)w, (const uint8_t *)x, (OutT *)y, N,
                     K, ldy, alpha);
}

template <typename OutT, int ROWS>
static bool gemv8_m(cudaStream_t s, const void *w, const void *x, void *y, int M, int N, int K, int64_t ldy, float alpha) {
  switch (M) {
    case 1: gemv8_launch<OutT, 1, ROWS>(s, w, x, y, N, K, ldy, alpha); return true;
    case 2: gemv8_launch<OutT, 2, ROWS>(s, w, x, y, N, K, ldy, alpha); return true;
    case 3: gemv8_launch<OutT, 3, ROWS>(s, w, x, y, N, K, ldy, alpha); return true;
    case 4: gemv8_launch<OutT, 4, ROWS>(s, w, x, y, N, K, ldy, alpha); return true;
    case 5: gemv8_launch<OutT, 5, ROWS>(s, w, x, y, N, K, ldy, alpha); return true;
    case 6: gemv8_launch<OutT, 6, ROWS>(s, w, x, y, N, K, ldy, alpha); return true;
    case 7: gemv8_launch<OutT, 7, ROWS>(s, w, x, y, N, K, ldy, alpha); return true;
    case 8: gemv8_launch<OutT, 8, ROWS>(s, w, x, y, N, K, ldy, alpha); return true;
    default: return false;
  }
}

template <typename OutT>
static bool gemv8_rows(cudaStream_t s, const void *w, const void *x, void *y, int M, int N, int K, int64_t ldy, float alpha, int rows) {
  switch (rows) {
    case 1: return gemv8_m<OutT, 1>(s, w, x, y, M, N, K, ldy, alpha);
    case 2: return gemv8_m<OutT, 2>(s, w, x, y, M, N, K, ldy, alpha);
    case 4: return gemv8_m<OutT, 4>(s, w, x, y, M, N, K, ldy, alpha);
    default: return false;
  }
}

bool trtbe_gemv_fp8_ok(const void *w, const void *x, int32_t M, int32_t K, int32_t y_dtype, int32_t rows) {
  return M >= 1 && M <= 8 && K > 0 && K % 16 == 0 && ((uintptr_t)w % 16) == 0 && ((uintptr_t)x % 16) == 0 &&
         (y_dtype == TRTB_DTYPE_F32 || y_dtype == TRTB_DTYPE_BF16 || y_dtype == TRTB_DTYPE_F16) && (rows == 1 || rows == 2 || rows == 4);
}

int32_t trtbe_gemv_fp8(cudaStream_t s, const void *w, const void *x, void *y, int32_t M, int32_t N, int32_t K, int32_t y_dtype,
                       int64_t ldy, float alpha, int32_t rows) {
  if (M <= 0 || N <= 0) return TRTB_OK;
  if (!trtbe_gemv_fp8_ok(w, x, M, K, y_dtype, rows))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "gemv_fp8: unsupported call (M=%d K=%d y %d rows %d)", M, K, y_dtype, rows);
  bool ok = false;
  switch (y_dtype) {
    case TRTB_DTYPE_F32: ok = gemv8_rows<float>(s, w, x, y, M, N, K, ldy, alpha, rows); break;
    case TRTB_DTYPE_BF16: ok = gemv8_rows<__nv_bfloat16>(s, w, x, y, M, N, K, ldy, alpha, rows); break;
    default: ok = gemv8_rows<__half>(s, w, x, y, M, N, K, ldy, alpha, rows); break;
  }
  if (!ok) return trtb__fail(TRTB_ERR_INTERNAL, "gemv_fp8: no instantiation for M=%d rows=%d", M, rows);
  TRTB_CUDA_CHECK_LAUNCH("gemv_fp8_kernel");
  return TRTB_OK;
}

int32_t trtbe_fp8_to_bf16(cudaStream_t s, const void *src, void *dst, int64_t n) {
  if (n <= 0) return TRTB_OK;
  const unsigned blocks = (unsigned)std::min<int64_t>((n + 255) / 256, 65535);
  (void)trtbe_launch(fp8_to_bf16_kernel, dim3(blocks), dim3(256), 0, s, (const __nv_fp8_storage_t *)src, (__nv_bfloat16 *)dst, n);
  TRTB_CUDA_CHECK_LAUNCH("fp8_to_bf16_kernel");
  return TRTB_OK;
}

int32_t trtbe_quant_fp8(cudaStream_t s, const void *x, int32_t x_dtype, int64_t ldx, void *out, int64_t M, int64_t K, float scale) {
  if (M <= 0 || K <= 0) return TRTB_OK;
  if (!(scale > 0.f)) return trtb__fail(TRTB_ERR_INVALID_ARG, "quant_fp8: scale %g is not positive", (double)scale);
  if (ldx < K) return trtb__fail(TRTB_ERR_INVALID_ARG, "quant_fp8: ldx %lld < K %lld", (long long)ldx, (long long)K);
  const dim3 grid((unsigned)M, (unsigned)((K + 1023) / 1024));
  auto *o = static_cast<__nv_fp8_storage_t *>(out);
  switch (x_dtype) {
    case TRTB_DTYPE_F32: (void)trtbe_launch(quant_fp8_kernel<float>, grid, dim3(256), 0, s, (const float *)x, ldx, o, K, scale); break;
    case TRTB_DTYPE_BF16: (void)trtbe_launch(quant_fp8_kernel<__nv_bfloat16>, grid, dim3(256), 0, s, (const __nv_bfloat16 *)x, ldx, o, K, scale); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(quant_fp8_kernel<__half>, grid, dim3(256), 0, s, (const __half *)x, ldx, o, K, scale); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "quant_fp8: x dtype %d is not F32/F16/BF16", x_dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("quant_fp8_kernel");
  return TRTB_OK;
}
