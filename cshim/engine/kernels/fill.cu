/*
 * fill.cu: a random fill of device memory (splitmix64 per element), for benchmarks and the
 * tactic tuner's inputs.
 */
#include "fill.cuh"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

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

int32_t trtbe_fill_random(cudaStream_t s, void *p, int64_t n, int32_t dtype, uint64_t seed, float scale) {
  if (n <= 0) return TRTB_OK;
  switch (dtype) {
    case TRTB_DTYPE_BF16: (void)trtbe_launch(fill_random_kernel<__nv_bfloat16>, dim3(trtbe_grid_for(n, 256)), dim3(256), 0, s, (__nv_bfloat16 *)p, n, seed, scale); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(fill_random_kernel<__half>, dim3(trtbe_grid_for(n, 256)), dim3(256), 0, s, (__half *)p, n, seed, scale); break;
    case TRTB_DTYPE_F32: (void)trtbe_launch(fill_random_kernel<float>, dim3(trtbe_grid_for(n, 256)), dim3(256), 0, s, (float *)p, n, seed, scale); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "fill_random: dtype %d", dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("fill_random_kernel");
  return TRTB_OK;
}
