/*
 * activation.cu: the element-wise ops: gated activation (SiLU / GELU-tanh of the gate times up,
 * TRTB_OP_GATED_ACT), the logit soft-cap (TRTB_OP_SOFTCAP) and a per-column scaling
 * (TRTB_OP_MUL_COLS).
 *
 * Napkin maths (Llama-3-8B, one decode token): each kernel moves a few tens of KB, so they are
 * latency-bound (a few µs each); they matter only through their count, which CUDA graphs hide.
 */
#include "activation.cuh"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

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
    float v = up * act_fn(g, a.act);
    if (a.mul) v *= a.mul[i];
    static_cast<typename OutCvt<OutT>::S *>(a.out)[idx] = OutCvt<OutT>::cvt(v, a.out_scale);
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
      ov[e] = from_f<T>(a.mul ? u * act_fn(v, a.act) * a.mul[i + e] : u * act_fn(v, a.act));
    }
    *reinterpret_cast<uint4 *>(static_cast<T *>(a.out) + t * a.I + i) = o;
  }
}

template <typename T>
__global__ void mul_cols_kernel(T *x, int64_t ld, const float *__restrict__ v, int64_t rows, int64_t cols) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t n = rows * cols;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    T *p = x + r * ld + c;
    *p = from_f<T>(to_f<T>(*p) * v[c]);
  }
}

template <typename T>
__global__ void softcap_kernel(T *x, int64_t n, float cap) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    x[i] = from_f<T>(tanhf(to_f<T>(x[i]) / cap) * cap);
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

template <typename InT>
static int32_t gated_act_out(cudaStream_t s, const GatedActArgs &a, unsigned grid) {
  switch (a.out_dtype) {
    case TRTB_DTYPE_BF16: (void)trtbe_launch(gated_act_kernel<InT, __nv_bfloat16>, dim3(grid), dim3(256), 0, s, a); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(gated_act_kernel<InT, __half>, dim3(grid), dim3(256), 0, s, a); break;
    case TRTB_DTYPE_F32: (void)trtbe_launch(gated_act_kernel<InT, float>, dim3(grid), dim3(256), 0, s, a); break;
    case TRTB_DTYPE_F8_E4M3:
      if (!(a.out_scale > 0.f)) return trtb__fail(TRTB_ERR_INVALID_ARG, "gated_act: FP8 output needs a positive scale (got %g)", (double)a.out_scale);
      (void)trtbe_launch(gated_act_kernel<InT, Fp8E4M3>, dim3(grid), dim3(256), 0, s, a);
      break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "gated_act: out dtype %d", a.out_dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("gated_act_kernel");
  return TRTB_OK;
}

int32_t trtbe_gated_act(cudaStream_t s, const GatedActArgs &a) {
  if (a.T <= 0 || a.I <= 0) return TRTB_OK;
  if (a.act != 0 && a.act != 1) return trtb__fail(TRTB_ERR_INVALID_ARG, "gated_act: activation %d (0 silu, 1 gelu_tanh)", a.act);
  if (a.I % 8 == 0 && a.in_dtype == a.out_dtype && TRTBE_DTYPE_OK16(a.in_dtype) && ((uintptr_t)a.in % 16) == 0 &&
      ((uintptr_t)a.out % 16) == 0) {
    const unsigned grid = trtbe_grid_for(a.I / 8 * a.T, 256);
    if (a.in_dtype == TRTB_DTYPE_BF16) (void)trtbe_launch(gated_act_vec8_kernel<__nv_bfloat16>, dim3(grid), dim3(256), 0, s, a);
    else (void)trtbe_launch(gated_act_vec8_kernel<__half>, dim3(grid), dim3(256), 0, s, a);
    TRTB_CUDA_CHECK_LAUNCH("gated_act_vec8_kernel");
    return TRTB_OK;
  }
  const unsigned grid = trtbe_grid_for(a.I * a.T, 256);
  switch (a.in_dtype) {
    case TRTB_DTYPE_BF16: return gated_act_out<__nv_bfloat16>(s, a, grid);
    case TRTB_DTYPE_F16: return gated_act_out<__half>(s, a, grid);
    case TRTB_DTYPE_F32: return gated_act_out<float>(s, a, grid);
    default: return trtb__fail(TRTB_ERR_DTYPE, "gated_act: in dtype %d", a.in_dtype);
  }
}

int32_t trtbe_mul_cols(cudaStream_t s, void *x, int32_t dtype, int64_t ld, const float *v, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return TRTB_OK;
  if (!x || !v || ld < cols) return trtb__fail(TRTB_ERR_INVALID_ARG, "mul_cols: NULL pointer or ld %lld < cols %lld", (long long)ld, (long long)cols);
  const dim3 grid(trtbe_grid_for(rows * cols, 256));
  switch (dtype) {
    case TRTB_DTYPE_F32: (void)trtbe_launch(mul_cols_kernel<float>, grid, dim3(256), 0, s, (float *)x, ld, v, rows, cols); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(mul_cols_kernel<__half>, grid, dim3(256), 0, s, (__half *)x, ld, v, rows, cols); break;
    case TRTB_DTYPE_BF16: (void)trtbe_launch(mul_cols_kernel<__nv_bfloat16>, grid, dim3(256), 0, s, (__nv_bfloat16 *)x, ld, v, rows, cols); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "mul_cols: dtype %d (F32, F16, BF16)", dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("mul_cols_kernel");
  return TRTB_OK;
}

int32_t trtbe_softcap(cudaStream_t s, void *x, int32_t dtype, int64_t n, float cap) {
  if (n <= 0) return TRTB_OK;
  if (!(cap > 0.f)) return trtb__fail(TRTB_ERR_INVALID_ARG, "softcap: cap must be positive, got %g", (double)cap);
  const dim3 grid(trtbe_grid_for(n, 256));
  if (dtype == TRTB_DTYPE_F32) (void)trtbe_launch(softcap_kernel<float>, grid, dim3(256), 0, s, (float *)x, n, cap);
  else if (dtype == TRTB_DTYPE_F16) (void)trtbe_launch(softcap_kernel<__half>, grid, dim3(256), 0, s, (__half *)x, n, cap);
  else return trtb__fail(TRTB_ERR_DTYPE, "softcap: dtype %d (F32 or F16)", dtype);
  TRTB_CUDA_CHECK_LAUNCH("softcap_kernel");
  return TRTB_OK;
}
