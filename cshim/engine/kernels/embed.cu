/*
 * embed.cu: token embedding (TRTB_OP_EMBED): one block per token gathers its row of the table
 * (this rank's vocabulary slice) into f32, scaled.
 *
 * Napkin maths (Llama-3-8B, one decode token): each kernel moves a few tens of KB, so they are
 * latency-bound (a few µs each); they matter only through their count, which CUDA graphs hide.
 */
#include "embed.cuh"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

template <typename T>
__global__ void embed_kernel(EmbedArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t t = blockIdx.x;
  const int64_t id = (int64_t)a.ids[t] - a.vocab_start;
  const bool ok = id >= 0 && id < a.rows;
  const T *row = static_cast<const T *>(a.table) + (ok ? id : 0) * a.H;
  float *out = a.out + t * a.H;
  for (int i = threadIdx.x; i < a.H; i += blockDim.x) out[i] = ok ? to_f<T>(row[i]) * a.scale : 0.f;
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

int32_t trtbe_embed(cudaStream_t s, const EmbedArgs &a) {
  if (a.T <= 0) return TRTB_OK;
  const int threads = a.H >= 1024 ? 256 : 128;
  switch (a.dtype) {
    case TRTB_DTYPE_BF16: (void)trtbe_launch(embed_kernel<__nv_bfloat16>, dim3((unsigned)a.T), dim3(threads), 0, s, a); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(embed_kernel<__half>, dim3((unsigned)a.T), dim3(threads), 0, s, a); break;
    case TRTB_DTYPE_F32: (void)trtbe_launch(embed_kernel<float>, dim3((unsigned)a.T), dim3(threads), 0, s, a); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "embed: table dtype %d is not F32/F16/BF16", a.dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("embed_kernel");
  return TRTB_OK;
}
