/*
 * sample.cu: one token per row of logits, one block of 1024 threads per row.
 *
 *  greedy (temperature <= 0 or top_k == 1): argmax, ties to the lowest index (as the CPU runner).
 *  otherwise: p_i = exp((x_i - max) / temperature) in (0, 1]. Top-k and top-p become thresholds
 *  on p found by binary search over the bit patterns of positive floats (monotone as integers):
 *    tau_k = largest tau with count(p >= tau) >= k,   tau_p = largest tau with mass(p >= tau) >= top_p * Z.
 *  Tokens with p >= max(tau_k, tau_p) are kept (ties at the threshold are all kept), and one is
 *  drawn by inverse CDF in vocabulary order with u = hash(seed, step, row) in [0, 1).
 *  Deterministic for a given (seed, step) and block size.
 *
 * Logits are F32 or F16 (read as f32; the comparisons and sums are f32 either way).
 *
 * Cost: 2 x 30 passes of V / 1024 loads per thread at most, a few tens of µs for V = 128k.
 */
#include "sample.cuh"

#define SAMPLE_THREADS 1024

__device__ __forceinline__ uint64_t smix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

__device__ __forceinline__ float prob(float x, float mx, float invT) { return expf((x - mx) * invT); }

template <typename T>
__global__ void __launch_bounds__(SAMPLE_THREADS) sample_kernel(SampleArgs a) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  __shared__ float red[32];
  __shared__ float sv[32];
  __shared__ int si[32];
  __shared__ float scan[32];
  __shared__ int found;
  const int row = blockIdx.x;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const T *xr = static_cast<const T *>(a.logits) + (int64_t)row * a.ld;
  auto x = [xr](int i) { return to_f<T>(xr[i]); };  // F16 logits widen to f32 as they are read
  const trtb_engine_sample_params p = a.params[row];
  const int V = a.V;

  // argmax (value desc, index asc); NaN never wins
  float best = -INFINITY;
  int bi = 0x7fffffff;
  for (int i = tid; i < V; i += SAMPLE_THREADS) {
    const float v = x(i);
    if (v > best) {
      best = v;
      bi = i;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > best || (ov == best && oi < bi)) {
      best = ov;
      bi = oi;
    }
  }
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = bi;
  }
  __syncthreads();
  if (warp == 0) {
    best = sv[lane];
    bi = si[lane];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > best || (ov == best && oi < bi)) {
        best = ov;
        bi = oi;
      }
    }
    if (lane == 0) {
      sv[0] = best;
      si[0] = bi;
    }
  }
  __syncthreads();
  const float mx = sv[0];
  const int argmax = si[0] == 0x7fffffff ? 0 : si[0];
  if (!(p.temperature > 0.f) || p.top_k == 1 || mx == -INFINITY) {
    if (tid == 0) a.out[row] = argmax;
    return;
  }
  const float invT = 1.f / p.temperature;

  float z = 0.f;
  for (int i = tid; i < V; i += SAMPLE_THREADS) z += prob(x(i), mx, invT);
  const float Z = block_sum(z, red);

  uint32_t tau = 0;  // bits of the threshold on p; 0 keeps everything
  if (p.top_k > 1 && p.top_k < V) {
    uint32_t lo = 0, hi = 0x3f800000u;  // 1.0f: count(p >= 1) >= 1
    while (lo < hi) {
      const uint32_t mid = lo + (hi - lo + 1) / 2;
      const float t = __uint_as_float(mid);
      float c = 0.f;
      for (int i = tid; i < V; i += SAMPLE_THREADS) c += prob(x(i), mx, invT) >= t ? 1.f : 0.f;
      c = block_sum(c, red);
      if (c >= (float)p.top_k) lo = mid;
      else hi = mid - 1;
    }
    tau = lo;
  }
  if (p.top_p > 0.f && p.top_p < 1.f) {
    const float target = p.top_p * Z;
    uint32_t lo = 0, hi = 0x3f800000u;
    while (lo < hi) {
      const uint32_t mid = lo + (hi - lo + 1) / 2;
      const float t = __uint_as_float(mid);
      float m = 0.f;
      for (int i = tid; i < V; i += SAMPLE_THREADS) {
        const float q = prob(x(i), mx, invT);
        m += q >= t ? q : 0.f;
      }
      m = block_sum(m, red);
      if (m >= target) lo = mid;
      else hi = mid - 1;
    }
    if (lo > tau) tau = lo;
  }
  const float t = __uint_as_float(tau);

  // inverse CDF over kept tokens in vocabulary order: contiguous chunk per thread
  const int chunk = (V + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
  const int b0 = min(V, tid * chunk), b1 = min(V, b0 + chunk);
  float local = 0.f;
  int last_kept = -1;
  for (int i = b0; i < b1; i++) {
    const float q = prob(x(i), mx, invT);
    if (q >= t) {
      local += q;
      last_kept = i;
    }
  }
  // exclusive block scan of `local`
  float incl = local;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float n = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += n;
  }
  if (lane == 31) scan[warp] = incl;
  if (tid == 0) found = -1;
  __syncthreads();
  if (warp == 0) {
    float w = scan[lane];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float n = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += n;
    }
    scan[lane] = w;  // inclusive totals per warp
  }
  __syncthreads();
  const float total = scan[31];
  const float excl = (warp > 0 ? scan[warp - 1] : 0.f) + incl - local;
  const uint64_t r = smix(p.seed ^ smix(p.step * 0xD1B54A32D192ED03ull + (uint64_t)row));
  const float u = (float)(r >> 40) * (1.0f / 16777216.0f) * total;
  if (local > 0.f && u >= excl && u < excl + local) {
    float c = excl;
    int pick = last_kept;
    for (int i = b0; i < b1; i++) {
      const float q = prob(x(i), mx, invT);
      if (q >= t) {
        c += q;
        if (u < c) {
          pick = i;
          break;
        }
      }
    }
    atomicMax(&found, pick);
  }
  // the highest kept index: the answer when rounding put u past every partial sum
  __shared__ int lastk;
  if (tid == 0) lastk = -1;
  __syncthreads();
  if (last_kept >= 0) atomicMax(&lastk, last_kept);
  __syncthreads();
  if (tid == 0) a.out[row] = found >= 0 ? found : (lastk >= 0 ? lastk : argmax);
}

int32_t trtbe_sample(cudaStream_t s, const SampleArgs &a) {
  if (a.R <= 0) return TRTB_OK;
  if (a.V <= 0) return trtb__fail(TRTB_ERR_INVALID_ARG, "sample: vocabulary size %d", a.V);
  if (a.dtype == TRTB_DTYPE_F32) (void)trtbe_launch(sample_kernel<float>, dim3((unsigned)a.R), dim3(SAMPLE_THREADS), 0, s, a);
  else if (a.dtype == TRTB_DTYPE_F16) (void)trtbe_launch(sample_kernel<__half>, dim3((unsigned)a.R), dim3(SAMPLE_THREADS), 0, s, a);
  else return trtb__fail(TRTB_ERR_DTYPE, "sample: logits dtype %d (F32 or F16)", a.dtype);
  TRTB_CUDA_CHECK_LAUNCH("sample_kernel");
  return TRTB_OK;
}
