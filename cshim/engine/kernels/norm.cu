/*
 * norm.cu: the residual add fused with RMSNorm (TRTB_OP_ADD_NORM): one block per token, the row
 * either in registers (H <= 8192, H % 4 == 0) or in dynamic shared memory (any H <= 16384).
 *
 * Napkin maths (Llama-3-8B, one decode token): each kernel moves a few tens of KB, so they are
 * latency-bound (a few µs each); they matter only through their count, which CUDA graphs hide.
 */
#include "norm.cuh"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

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
  auto *out = static_cast<typename OutCvt<OutT>::S *>(a.out) + t * H;
  for (int i = threadIdx.x; i < H; i += blockDim.x) out[i] = OutCvt<OutT>::cvt(row[i] * r * (a.norm_w ? a.norm_w[i] : 1.f), a.out_scale);
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
  auto *out = static_cast<typename OutCvt<OutT>::S *>(a.out) + t * H;
#pragma unroll
  for (int e = 0; e < EPT; e++) {
    const int i = threadIdx.x + e * blockDim.x;
    if (i < H) out[i] = OutCvt<OutT>::cvt(r[e] * s * w[e], a.out_scale);
  }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

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
  if (a.out && a.out_dtype == TRTB_DTYPE_F8_E4M3 && !(a.out_scale > 0.f))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "add_norm: FP8 output needs a positive scale (got %g)", (double)a.out_scale);
  if (a.H % 4 == 0 && a.H <= 8192) {
    switch (a.out ? a.out_dtype : TRTB_DTYPE_BF16) {
      case TRTB_DTYPE_BF16: return add_norm_reg<__nv_bfloat16>(s, a);
      case TRTB_DTYPE_F16: return add_norm_reg<__half>(s, a);
      case TRTB_DTYPE_F32: return add_norm_reg<float>(s, a);
      case TRTB_DTYPE_F8_E4M3: return add_norm_reg<Fp8E4M3>(s, a);
      default: return trtb__fail(TRTB_ERR_DTYPE, "add_norm: out dtype %d is not F32/F16/BF16/F8_E4M3", a.out_dtype);
    }
  }
  const size_t smem = (size_t)a.H * sizeof(float);
  const int threads = a.H >= 2048 ? 512 : 256;
  switch (a.out ? a.out_dtype : TRTB_DTYPE_BF16) {
    case TRTB_DTYPE_BF16: (void)trtbe_launch(add_norm_kernel<__nv_bfloat16>, dim3((unsigned)a.T), dim3(threads), smem, s, a); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(add_norm_kernel<__half>, dim3((unsigned)a.T), dim3(threads), smem, s, a); break;
    case TRTB_DTYPE_F32: (void)trtbe_launch(add_norm_kernel<float>, dim3((unsigned)a.T), dim3(threads), smem, s, a); break;
    case TRTB_DTYPE_F8_E4M3: (void)trtbe_launch(add_norm_kernel<Fp8E4M3>, dim3((unsigned)a.T), dim3(threads), smem, s, a); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "add_norm: out dtype %d is not F32/F16/BF16/F8_E4M3", a.out_dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("add_norm_kernel");
  return TRTB_OK;
}

int32_t trtbe_norm_init(void) {
  // add_norm may need up to 64 KiB of dynamic shared memory (H = 16384).
  TRTB_CUDA_TRY(cudaFuncSetAttribute(add_norm_kernel<__nv_bfloat16>, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
  TRTB_CUDA_TRY(cudaFuncSetAttribute(add_norm_kernel<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
  TRTB_CUDA_TRY(cudaFuncSetAttribute(add_norm_kernel<float>, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
  TRTB_CUDA_TRY(cudaFuncSetAttribute(add_norm_kernel<Fp8E4M3>, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
  return TRTB_OK;
}
