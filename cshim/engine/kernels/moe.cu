/*
 * moe.cu: MoE routing (TRTB_OP_MOE_ROUTE): router logits, softmax and top-k per token.
 *
 * Napkin maths (Llama-3-8B, one decode token): each kernel moves a few tens of KB, so they are
 * latency-bound (a few µs each); they matter only through their count, which CUDA graphs hide.
 */
#include "moe.cuh"

// ----------------------------------------------------------------------------------------------
// CUDA kernels

#define MOE_MAX_E 256
#define MOE_MAX_K 16
/* One block (128 threads) per token: router logits by warp dot products, then softmax / top-k /
 * renormalise on one thread in double (E is small), matching the CPU runner's order of ties. */
template <typename XT>
__global__ void __launch_bounds__(128) moe_route_kernel(MoeRouteArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  __shared__ float logits[MOE_MAX_E];
  const int64_t t = blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const XT *x = static_cast<const XT *>(a.x) + t * a.H;
  for (int e = warp; e < a.E; e += 4) {
    const float *w = a.router + (int64_t)e * a.H;
    float acc = 0.f;
    for (int i = lane; i < a.H; i += 32) acc += to_f<XT>(x[i]) * w[i];
    acc = warp_sum(acc);
    if (lane == 0) logits[e] = acc;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  double mx = -INFINITY;
  for (int e = 0; e < a.E; e++) mx = fmax(mx, (double)logits[e]);
  double p[MOE_MAX_E];
  double sum = 0;
  for (int e = 0; e < a.E; e++) {
    p[e] = exp((double)logits[e] - mx);
    sum += p[e];
  }
  for (int e = 0; e < a.E; e++) p[e] /= sum;
  int sel[MOE_MAX_K];
  double norm = 0;
  for (int j = 0; j < a.k; j++) {
    int best = -1;
    for (int e = 0; e < a.E; e++) {
      bool taken = false;
      for (int q = 0; q < j; q++) taken |= sel[q] == e;
      if (!taken && (best < 0 || p[e] > p[best])) best = e;
    }
    sel[j] = best;
    norm += p[best];
  }
  for (int j = 0; j < a.k; j++) {
    a.ids[t * a.k + j] = sel[j];
    a.w[t * a.k + j] = (float)(p[sel[j]] / norm);
  }
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

int32_t trtbe_moe_route(cudaStream_t s, const MoeRouteArgs &a) {
  if (a.T <= 0) return TRTB_OK;
  if (a.E < 1 || a.E > MOE_MAX_E || a.k < 1 || a.k > MOE_MAX_K || a.k > a.E)
    return trtb__fail(TRTB_ERR_UNSUPPORTED, "moe_route: %d experts, top-%d (max %d experts, top-%d)", a.E, a.k, MOE_MAX_E, MOE_MAX_K);
  switch (a.x_dtype) {
    case TRTB_DTYPE_BF16: (void)trtbe_launch(moe_route_kernel<__nv_bfloat16>, dim3((unsigned)a.T), dim3(128), 0, s, a); break;
    case TRTB_DTYPE_F16: (void)trtbe_launch(moe_route_kernel<__half>, dim3((unsigned)a.T), dim3(128), 0, s, a); break;
    case TRTB_DTYPE_F32: (void)trtbe_launch(moe_route_kernel<float>, dim3((unsigned)a.T), dim3(128), 0, s, a); break;
    default: return trtb__fail(TRTB_ERR_DTYPE, "moe_route: x dtype %d", a.x_dtype);
  }
  TRTB_CUDA_CHECK_LAUNCH("moe_route_kernel");
  return TRTB_OK;
}
