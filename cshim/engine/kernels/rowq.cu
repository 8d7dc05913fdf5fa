/*
 * rowq.cu: per-token dynamic activation quantization (TRTB_OP_ACT_ROWQ: SmoothQuant's per-token
 * plugin variants in int8, FP8_PER_CHANNEL_PER_TOKEN in e4m3) and the dequantization of the GEMM
 * sums those inputs give (acc · a · ws[n] · xs[m]; also the per-tensor SmoothQuant epilogue).
 * Bit for bit the CPU runner's simulation (src/runtime/quant-sim.ts perTokenInt8 / perTokenFp8).
 *
 * Napkin maths (Llama-3-8B): one decode token reads 8–57 KB and writes a quarter of it: latency
 * (~2–3 µs, two passes over a row that stays in L1/L2); prefill of 2,048 tokens × 14,336 f32
 * inputs: 117 MB read twice from L2 / HBM at ~3 TB/s ≈ 40–80 µs. The dequantization of a prefill
 * GEMM's f32 sums (2,048 × 14,336 × 4 B) is another ~60 µs: a cost beside the GEMM's ~400 µs.
 */
#include <cuda_fp8.h>

#include "rowq.cuh"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

#define ROWQ_THREADS 256

__device__ __forceinline__ float block_max(float v, float *red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < (ROWQ_THREADS / 32) ? red[lane] : 0.f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* One block per row; the row is read twice (max, then quantize). */
template <typename T, bool FP8>
__global__ void __launch_bounds__(ROWQ_THREADS) quant_rows_kernel(const T *x, int64_t ldx, const float *div, void *out, int64_t K, float *xs,
                                                                  float lo, float hi) {
  __shared__ float red[ROWQ_THREADS / 32];
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t m = blockIdx.x;
  const T *row = x + m * ldx;
  const bool clamp = FP8 && lo < hi;
  auto value = [&](int64_t k) {
    float v = to_f<T>(row[k]);
    if (!FP8 && div) v = __fdiv_rn(v, div[k]);
    if (clamp) v = fminf(fmaxf(v, lo), hi);
    return v;
  };
  float a = 0.f;
  for (int64_t k = threadIdx.x; k < K; k += ROWQ_THREADS) a = fmaxf(a, fabsf(value(k)));
  a = block_max(a, red);
  if (FP8) {
    const float s = fmaxf(__fdiv_rn(a, 448.f), TRTBE_FP8_MIN_ROW_SCALE);
    __nv_fp8_storage_t *o = (__nv_fp8_storage_t *)out + m * K;
    for (int64_t k = threadIdx.x; k < K; k += ROWQ_THREADS) o[k] = __nv_cvt_float_to_fp8(__fdiv_rn(value(k), s), __NV_SATFINITE, __NV_E4M3);
    if (threadIdx.x == 0) xs[m] = s;
  } else {
    int8_t *o = (int8_t *)out + m * K;
    const bool zero = !(a > 0.f);
    const float to_int = zero ? 0.f : __fdiv_rn(127.f, a);
    for (int64_t k = threadIdx.x; k < K; k += ROWQ_THREADS) {
      float q = zero ? 0.f : rintf(__fmul_rn(value(k), to_int));
      q = q != q ? 0.f : fminf(fmaxf(q, -128.f), 127.f);
      o[k] = (int8_t)__float2int_rn(q);
    }
    if (threadIdx.x == 0) xs[m] = zero ? 0.f : __fdiv_rn(a, 127.f);
  }
}

template <typename AccT, typename T>
__global__ void __launch_bounds__(256) dequant_acc_kernel(const AccT *acc, const float *ws, float a, const float *xs, T *y, int64_t ldy, int64_t M,
                                                          int64_t N) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < M * N; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t m = i / N, n = i % N;
    float v = __fmul_rn((float)acc[i], __fmul_rn(a, ws[n]));
    if (xs) v = __fmul_rn(v, xs[m]);
    y[m * ldy + n] = from_f<T>(v);
  }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

template <typename T>
static void launch_quant_rows(cudaStream_t s, const void *x, int64_t ldx, const float *div, void *out, bool fp8, int64_t M, int64_t K, float *xs,
                              float lo, float hi) {
  if (fp8) (void)trtbe_launch(quant_rows_kernel<T, true>, dim3((unsigned)M), dim3(ROWQ_THREADS), 0, s, (const T *)x, ldx, div, out, K, xs, lo, hi);
  else (void)trtbe_launch(quant_rows_kernel<T, false>, dim3((unsigned)M), dim3(ROWQ_THREADS), 0, s, (const T *)x, ldx, div, out, K, xs, lo, hi);
}

int32_t trtbe_quant_rows(cudaStream_t s, const void *x, int32_t x_dtype, int64_t ldx, const float *div, void *out, int32_t out_dtype,
                         int64_t M, int64_t K, float *xs, float lo, float hi) {
  if (M <= 0 || K <= 0) return TRTB_OK;
  if (ldx < K) return trtb__fail(TRTB_ERR_INVALID_ARG, "act_rowq: ldx %lld < K %lld", (long long)ldx, (long long)K);
  if (!xs) return trtb__fail(TRTB_ERR_INVALID_ARG, "act_rowq: no row-scale output");
  if (M > 2147483647) return trtb__fail(TRTB_ERR_INVALID_ARG, "act_rowq: %lld rows", (long long)M);
  if (out_dtype != TRTB_DTYPE_I8 && out_dtype != TRTB_DTYPE_F8_E4M3)
    return trtb__fail(TRTB_ERR_DTYPE, "act_rowq: out dtype %d is not I8 / F8_E4M3", out_dtype);
  const bool fp8 = out_dtype == TRTB_DTYPE_F8_E4M3;
  switch (x_dtype) {
    case TRTB_DTYPE_F32: launch_quant_rows<float>(s, x, ldx, div, out, fp8, M, K, xs, lo, hi); break;
    case TRTB_DTYPE_BF16: launch_quant_rows<__nv_bfloat16>(s, x, ldx, div, out, fp8, M, K, xs, lo, hi); break;
    case TRTB_DTYPE_F16: launch_quant_rows<__half>(s, x, ldx, div, out, fp8, M, K, xs, lo, hi); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "act_rowq: x dtype %d is not F32/F16/BF16", x_dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("quant_rows_kernel");
  return TRTB_OK;
}

template <typename AccT>
static int32_t launch_dequant(cudaStream_t s, const AccT *acc, const float *ws, float a, const float *xs, void *y, int32_t yt, int64_t ldy,
                              int64_t M, int64_t N) {
  const unsigned grid = trtbe_grid_for(M * N, 256);
  switch (yt) {
    case TRTB_DTYPE_F32: (void)trtbe_launch(dequant_acc_kernel<AccT, float>, dim3(grid), dim3(256), 0, s, acc, ws, a, xs, (float *)y, ldy, M, N); break;
    case TRTB_DTYPE_BF16:
      (void)trtbe_launch(dequant_acc_kernel<AccT, __nv_bfloat16>, dim3(grid), dim3(256), 0, s, acc, ws, a, xs, (__nv_bfloat16 *)y, ldy, M, N);
      break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(dequant_acc_kernel<AccT, __half>, dim3(grid), dim3(256), 0, s, acc, ws, a, xs, (__half *)y, ldy, M, N); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "dequant: y dtype %d is not F32/F16/BF16", yt);
  }
  TRTB_CUDA_CHECK_LAUNCH("dequant_acc_kernel");
  return TRTB_OK;
}

int32_t trtbe_dequant_acc(cudaStream_t s, const void *acc, bool acc_f32, const float *ws, float a, const float *xs, void *y, int32_t y_dtype,
                          int64_t ldy, int64_t M, int64_t N) {
  if (M <= 0 || N <= 0) return TRTB_OK;
  if (!ws) return trtb__fail(TRTB_ERR_INVALID_ARG, "dequant: no column scales");
  if (ldy < N) return trtb__fail(TRTB_ERR_INVALID_ARG, "dequant: ldy %lld < N %lld", (long long)ldy, (long long)N);
  return acc_f32 ? launch_dequant(s, (const float *)acc, ws, a, xs, y, y_dtype, ldy, M, N)
                 : launch_dequant(s, (const int32_t *)acc, ws, a, xs, y, y_dtype, ldy, M, N);
}
