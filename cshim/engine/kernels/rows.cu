/*
 * rows.cu: row gather (TRTB_OP_GATHER_ROWS: the tokens routed to one expert, the rows that reach
 * the LM head) and weighted scatter-add (TRTB_OP_SCATTER_ADD: expert outputs back to tokens).
 *
 * Napkin maths (Llama-3-8B, one decode token): each kernel moves a few tens of KB, so they are
 * latency-bound (a few µs each); they matter only through their count, which CUDA graphs hide.
 */
#include "rows.cuh"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

__global__ void gather_rows_kernel(const uint8_t *src, uint8_t *dst, const int32_t *idx, int64_t R, int64_t row_bytes) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t r = blockIdx.x;
  const uint8_t *s = src + (int64_t)idx[r] * row_bytes;
  uint8_t *d = dst + r * row_bytes;
  if (row_bytes % 16 == 0 && ((uintptr_t)s % 16 == 0) && ((uintptr_t)d % 16 == 0)) {
    for (int64_t i = threadIdx.x; i < row_bytes / 16; i += blockDim.x)
      reinterpret_cast<uint4 *>(d)[i] = reinterpret_cast<const uint4 *>(s)[i];
  } else {
    for (int64_t i = threadIdx.x; i < row_bytes; i += blockDim.x) d[i] = s[i];
  }
}

__global__ void scatter_add_kernel(const float *y, float *out, const int32_t *idx, const float *w, int64_t H) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t r = blockIdx.x;
  const float wr = w[r];
  const float *src = y + r * H;
  float *dst = out + (int64_t)idx[r] * H;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) dst[i] += wr * src[i];
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

int32_t trtbe_gather_rows(cudaStream_t s, const void *src, void *dst, const int32_t *idx, int64_t R, int64_t row_bytes) {
  if (R <= 0 || row_bytes <= 0) return TRTB_OK;
  (void)trtbe_launch(gather_rows_kernel, dim3((unsigned)R), dim3(256), 0, s, (const uint8_t *)src, (uint8_t *)dst, idx, R, row_bytes);
  TRTB_CUDA_CHECK_LAUNCH("gather_rows_kernel");
  return TRTB_OK;
}

int32_t trtbe_scatter_add(cudaStream_t s, const float *y, float *out, const int32_t *idx, const float *w, int64_t R, int64_t H) {
  if (R <= 0) return TRTB_OK;
  (void)trtbe_launch(scatter_add_kernel, dim3((unsigned)R), dim3(256), 0, s, y, out, idx, w, H);
  TRTB_CUDA_CHECK_LAUNCH("scatter_add_kernel");
  return TRTB_OK;
}
