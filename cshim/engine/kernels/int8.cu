/*
 * int8.cu: SmoothQuant W8A8 engines (TRTB_OP_ACT_I8, TRTB_OP_GEMM_I8's epilogue): the static
 * per-tensor activation quantization with the smoothing factor, bit for bit the CPU runner's
 * simulation (quant-sim.ts: x' = f32(x · pre), q = clamp(RNE(f32(x' / a)), −128, 127)). The int32
 * GEMM sums are dequantized by rowq.cu (y = acc · a · s[n]).
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
