/*
 * fp8.cu: activation quantization for FP8 GEMMs (TRTB_OP_QUANT_FP8): x / scale → e4m3, round to
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

// ----------------------------------------------------------------------------------------------
// kernel launchers

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
