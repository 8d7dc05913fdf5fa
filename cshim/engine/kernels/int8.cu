/*
 * int8.cu: SmoothQuant W8A8 engines (TRTB_OP_ACT_I8, TRTB_OP_GEMM_I8's epilogue): the static
 * per-tensor activation quantization with the smoothing factor, bit for bit the CPU runner's
 * simulation (quant-sim.ts: x' = f32(x · pre), q = clamp(RNE(f32(x' / a)), −128, 127)), and the
 * per-channel dequantization of the int32 GEMM sums (y = acc · a · s[n]).
 *
 * Napkin maths (Llama-3-8B, one decode token): a few tens of KB each: latency-bound (~2 µs).
 */
#include "int8.cuh"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

/* grid (M, ceil(K / 1024)), 256 threads, 4 elements per thread. */
__global__ void __launch_bounds__(256) quant_int8_kernel(const float *x, int64_t ldx, const float *pre, int8_t *out, int64_t K, float scale) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t m = blockIdx.x;
  const int64_t k0 = ((int64_t)blockIdx.y * 256 + threadIdx.x) * 4;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int64_t k = k0 + j;
    if (k >= K) break;
    float v = x[m * ldx + k];
    if (pre) v = __fmul_rn(v, pre[k]);
    float q = __fdiv_rn(v, scale);
    q = q != q ? 0.f : fminf(fmaxf(q, -128.f), 127.f);
    out[m * K + k] = (int8_t)__float2int_rn(q);
  }
}

template <typename T>
__global__ void __launch_bounds__(256) dequant_i32_kernel(const int32_t *acc, const float *ws, float a, T *y, int64_t ldy, int64_t M, int64_t N) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < M * N; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t m = i / N, n = i % N;
    y[m * ldy + n] = from_f<T>((float)acc[i] * __fmul_rn(a, ws[n]));
  }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

int32_t trtbe_quant_int8(cudaStream_t s, const float *x, int64_t ldx, const float *pre, void *out, int64_t M, int64_t K, float scale) {
  if (M <= 0 || K <= 0) return TRTB_OK;
  if (!(scale > 0.f)) return trtb__fail(TRTB_ERR_INVALID_ARG, "quant_i8: scale %g is not positive", (double)scale);
  if (ldx < K) return trtb__fail(TRTB_ERR_INVALID_ARG, "quant_i8: ldx %lld < K %lld", (long long)ldx, (long long)K);
  (void)trtbe_launch(quant_int8_kernel, dim3((unsigned)M, (unsigned)((K + 1023) / 1024)), dim3(256), 0, s, x, ldx, pre, (int8_t *)out, K, scale);
  TRTB_CUDA_CHECK_LAUNCH("quant_int8_kernel");
  return TRTB_OK;
}

int32_t trtbe_dequant_i32(cudaStream_t s, const int32_t *acc, const float *ws, float a, void *y, int32_t y_dtype, int64_t ldy, int64_t M, int64_t N) {
  if (M <= 0 || N <= 0) return TRTB_OK;
  const unsigned grid = trtbe_grid_for(M * N, 256);
  switch (y_dtype) {
    case TRTB_DTYPE_F32: (void)trtbe_launch(dequant_i32_kernel<float>, dim3(grid), dim3(256), 0, s, acc, ws, a, (float *)y, ldy, M, N); break;
    case TRTB_DTYPE_BF16: (void)trtbe_launch(dequant_i32_kernel<__nv_bfloat16>, dim3(grid), dim3(256), 0, s, acc, ws, a, (__nv_bfloat16 *)y, ldy, M, N); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(dequant_i32_kernel<__half>, dim3(grid), dim3(256), 0, s, acc, ws, a, (__half *)y, ldy, M, N); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "gemm_i8: y dtype %d is not F32/F16/BF16", y_dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("dequant_i32_kernel");
  return TRTB_OK;
}
