/*
 * cast.cu: f32 / f16 / bf16 conversion on the GPU. It uses the same scalar code as the CPU
 * (common/numeric.h), so results are bit-identical to trtb_cast.
 *
 * Napkin maths: f32 -> bf16 moves 6 bytes per element; at ~3 TB/s of H100 HBM that is ~500 G
 * elements/s, so a 1 GiB f32 tensor takes under half a millisecond. One element per thread with
 * coalesced loads gets most of the way there; wider loads can come later if profiles ask.
 */
#include "cuda_common.cuh"
#include "cast.cuh"
#include "numeric.h"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

struct cast_f32_f16 {
  typedef uint32_t in;
  typedef uint16_t out;
  __device__ static out op(in u) { return trtb__f32_to_f16(u); }
};
struct cast_f32_bf16 {
  typedef uint32_t in;
  typedef uint16_t out;
  __device__ static out op(in u) { return trtb__f32_to_bf16(u); }
};
struct cast_f16_f32 {
  typedef uint16_t in;
  typedef uint32_t out;
  __device__ static out op(in h) { return trtb__f16_to_f32(h); }
};
struct cast_bf16_f32 {
  typedef uint16_t in;
  typedef uint32_t out;
  __device__ static out op(in h) { return trtb__bf16_to_f32(h); }
};
struct cast_f16_bf16 {
  typedef uint16_t in;
  typedef uint16_t out;
  __device__ static out op(in h) { return trtb__f32_to_bf16(trtb__f16_to_f32(h)); }
};
struct cast_bf16_f16 {
  typedef uint16_t in;
  typedef uint16_t out;
  __device__ static out op(in h) { return trtb__f32_to_f16(trtb__bf16_to_f32(h)); }
};

template <typename Op>
__global__ void cast_kernel(const typename Op::in *__restrict__ src, typename Op::out *__restrict__ dst,
                               uint64_t n) {
  const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = Op::op(src[i]);
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

template <typename Op>
static int32_t launch(cudaStream_t stream, const void *src, void *dst, uint64_t n) {
  const unsigned block = 256;
  const uint64_t want = (n + block - 1) / block;
  const unsigned grid = (unsigned)(want < TRTB_MAX_GRID_BLOCKS ? want : TRTB_MAX_GRID_BLOCKS);
  cast_kernel<Op><<<grid, block, 0, stream>>>((const typename Op::in *)src, (typename Op::out *)dst, n);
  TRTB_CUDA_CHECK_LAUNCH("cast_kernel");
  return TRTB_OK;
}

int32_t trtb__cuda_cast_launch(cudaStream_t stream, trtb__cast_kind kind, const void *src, void *dst, uint64_t n) {
  if (n == 0) return TRTB_OK;
  switch (kind) {
    case TRTB__CAST_F32_F16: return launch<cast_f32_f16>(stream, src, dst, n);
    case TRTB__CAST_F32_BF16: return launch<cast_f32_bf16>(stream, src, dst, n);
    case TRTB__CAST_F16_F32: return launch<cast_f16_f32>(stream, src, dst, n);
    case TRTB__CAST_BF16_F32: return launch<cast_bf16_f32>(stream, src, dst, n);
    case TRTB__CAST_F16_BF16: return launch<cast_f16_bf16>(stream, src, dst, n);
    case TRTB__CAST_BF16_F16: return launch<cast_bf16_f16>(stream, src, dst, n);
    default: return trtb__fail(TRTB_ERR_INTERNAL, "trtb__cuda_cast_launch: unexpected kind %d", (int)kind);
  }
}
