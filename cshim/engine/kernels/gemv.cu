/*
 * gemv.cu: y[M, N] = x[M, K] . w[N, K]^T for small M (decode), a weight-streaming kernel.
 *
 * Each warp owns ROWS consecutive rows of w and walks K in 16-byte loads (8 elements per lane per
 * step), UNROLL steps in flight before the first use; x rows come through the read-only cache
 * (they are re-read by every warp, so they stay in L1/L2). Weights are read once with an
 * evict-first hint. fp32 accumulation, warp-shuffle reduction, lane 0 writes.
 *
 * Napkin maths: Llama-3-8B decode reads 15 GB of weights per token; at ~3 TB/s that is ~5 ms, so
 * this kernel's job is to keep >= 90% of HBM bandwidth busy on shapes as small as 4096 x 4096
 * (32 MiB, ~11 µs). Needs K % 8 == 0 and 16-byte aligned rows.
 */
#include "gemv.cuh"

#define GEMV_THREADS 256
#define GEMV_UNROLL 4

template <typename T, typename XT, typename OutT, int M, int ROWS>
__global__ void __launch_bounds__(GEMV_THREADS) gemv_kernel(const T *__restrict__ w, const XT *__restrict__ x,
                                                            OutT *__restrict__ y, int N, int K, int64_t ldx,
                                                            int64_t ldy) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int warp = blockIdx.x * (GEMV_THREADS / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  const int n0 = warp * ROWS;
  if (n0 >= N) return;
  const int K8 = K / 8;
  const uint4 *wr[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; r++) wr[r] = reinterpret_cast<const uint4 *>(w + (int64_t)min(n0 + r, N - 1) * K);
  float acc[ROWS][M];
#pragma unroll
  for (int r = 0; r < ROWS; r++)
#pragma unroll
    for (int m = 0; m < M; m++) acc[r][m] = 0.f;

  int k = lane;
  for (; k + 32 * (GEMV_UNROLL - 1) < K8; k += 32 * GEMV_UNROLL) {
    uint4 wv[GEMV_UNROLL][ROWS];
#pragma unroll
    for (int u = 0; u < GEMV_UNROLL; u++)
#pragma unroll
      for (int r = 0; r < ROWS; r++) wv[u][r] = __ldcs(wr[r] + k + 32 * u);
#pragma unroll
    for (int u = 0; u < GEMV_UNROLL; u++) {
#pragma unroll
      for (int m = 0; m < M; m++) {
        float xf[8];
        load8<XT>(x + m * ldx + 8 * (k + 32 * u), xf);
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
          float wf[8];
          unpack8<T>(wv[u][r], wf);
#pragma unroll
          for (int e = 0; e < 8; e++) acc[r][m] += wf[e] * xf[e];
        }
      }
    }
  }
  for (; k < K8; k += 32) {
#pragma unroll
    for (int m = 0; m < M; m++) {
      float xf[8];
      load8<XT>(x + m * ldx + 8 * k, xf);
#pragma unroll
      for (int r = 0; r < ROWS; r++) {
        float wf[8];
        unpack8<T>(__ldcs(wr[r] + k), wf);
#pragma unroll
        for (int e = 0; e < 8; e++) acc[r][m] += wf[e] * xf[e];
      }
    }
  }
  pdl_trigger();  // the weights are read: the next kernel may launch
#pragma unroll
  for (int r = 0; r < ROWS; r++)
#pragma unroll
    for (int m = 0; m < M; m++) acc[r][m] = warp_sum(acc[r][m]);
  if (lane == 0) {
#pragma unroll
    for (int r = 0; r < ROWS; r++)
      if (n0 + r < N)
#pragma unroll
        for (int m = 0; m < M; m++) y[m * ldy + n0 + r] = from_f<OutT>(acc[r][m]);
  }
}

__global__ void split16_kernel_bf16(const float *x, int64_t ldx, __nv_bfloat16 *hi, __nv_bfloat16 *lo, int64_t M, int64_t K) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t n = M * K;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float v = x[(i / K) * ldx + i % K];
    const __nv_bfloat16 h = __float2bfloat16_rn(v);
    hi[i] = h;
    lo[i] = __float2bfloat16_rn(v - __bfloat162float(h));
  }
}
__global__ void split16_kernel_f16(const float *x, int64_t ldx, __half *hi, __half *lo, int64_t M, int64_t K) {
  pdl_wait();
  pdl_trigger_if_one_wave();
  const int64_t n = M * K;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float v = x[(i / K) * ldx + i % K];
    const __half h = __float2half_rn(v);
    hi[i] = h;
    lo[i] = __float2half_rn(v - __half2float(h));
  }
}

// ----------------------------------------------------------------------------------------------
// launchers

template <typename T, typename XT, typename OutT, int M, int ROWS>
static void launch(cudaStream_t s, const void *w, const void *x, void *y, int N, int K, int64_t ldx, int64_t ldy) {
  const int warps = (N + ROWS - 1) / ROWS;
  const unsigned blocks = (unsigned)((warps + GEMV_THREADS / 32 - 1) / (GEMV_THREADS / 32));
  (void)trtbe_launch(gemv_kernel<T, XT, OutT, M, ROWS>, dim3(blocks), dim3(GEMV_THREADS), 0, s, (const T *)w, (const XT *)x, (OutT *)y, N, K, ldx, ldy);
}

template <typename T, typename XT, typename OutT, int ROWS>
static bool by_m(cudaStream_t s, const void *w, const void *x, void *y, int M, int N, int K, int64_t ldx, int64_t ldy) {
  switch (M) {
    case 1: launch<T, XT, OutT, 1, ROWS>(s, w, x, y, N, K, ldx, ldy); return true;
    case 2: launch<T, XT, OutT, 2, ROWS>(s, w, x, y, N, K, ldx, ldy); return true;
    case 3: launch<T, XT, OutT, 3, ROWS>(s, w, x, y, N, K, ldx, ldy); return true;
    case 4: launch<T, XT, OutT, 4, ROWS>(s, w, x, y, N, K, ldx, ldy); return true;
    case 5: launch<T, XT, OutT, 5, ROWS>(s, w, x, y, N, K, ldx, ldy); return true;
    case 6: launch<T, XT, OutT, 6, ROWS>(s, w, x, y, N, K, ldx, ldy); return true;
    case 7: launch<T, XT, OutT, 7, ROWS>(s, w, x, y, N, K, ldx, ldy); return true;
    case 8: launch<T, XT, OutT, 8, ROWS>(s, w, x, y, N, K, ldx, ldy); return true;
    default: return false;
  }
}

template <typename T, typename XT, typename OutT>
static bool by_rows(cudaStream_t s, const void *w, const void *x, void *y, int M, int N, int K, int64_t ldx, int64_t ldy,
                    int rows) {
  switch (rows) {
    case 1: return by_m<T, XT, OutT, 1>(s, w, x, y, M, N, K, ldx, ldy);
    case 2: return by_m<T, XT, OutT, 2>(s, w, x, y, M, N, K, ldx, ldy);
    case 4: return by_m<T, XT, OutT, 4>(s, w, x, y, M, N, K, ldx, ldy);
    default: return false;
  }
}

template <typename T>
static bool by_out(cudaStream_t s, const void *w, const void *x, void *y, int M, int N, int K, int64_t ldx, int64_t ldy,
                   int x_dtype, int y_dtype, int rows) {
  if (x_dtype == TRTB_DTYPE_F32) return y_dtype == TRTB_DTYPE_F32 && by_rows<T, float, float>(s, w, x, y, M, N, K, ldx, ldy, rows);
  switch (y_dtype) {
    case TRTB_DTYPE_F32: return by_rows<T, T, float>(s, w, x, y, M, N, K, ldx, ldy, rows);
    case TRTB_DTYPE_BF16: return by_rows<T, T, __nv_bfloat16>(s, w, x, y, M, N, K, ldx, ldy, rows);
    case TRTB_DTYPE_F16: return by_rows<T, T, __half>(s, w, x, y, M, N, K, ldx, ldy, rows);
    default: return false;
  }
}

bool trtbe_gemv_ok(const void *w, const void *x, int32_t M, int32_t K, int32_t w_dtype, int32_t x_dtype, int32_t y_dtype,
                   int64_t ldx, int32_t rows) {
  const bool xf = x_dtype == TRTB_DTYPE_F32;
  return M >= 1 && M <= 8 && K > 0 && K % 8 == 0 && ldx % 8 == 0 && ((uintptr_t)w % 16) == 0 &&
         ((uintptr_t)x % (xf ? 32 : 16)) == 0 && TRTBE_DTYPE_OK16(w_dtype) && (xf ? y_dtype == TRTB_DTYPE_F32 : x_dtype == w_dtype) &&
         (y_dtype == TRTB_DTYPE_F32 || y_dtype == TRTB_DTYPE_BF16 || y_dtype == TRTB_DTYPE_F16) && (rows == 1 || rows == 2 || rows == 4);
}

int32_t trtbe_gemv(cudaStream_t s, const void *w, const void *x, void *y, int32_t M, int32_t N, int32_t K, int32_t w_dtype,
                   int32_t x_dtype, int32_t y_dtype, int64_t ldx, int64_t ldy, int32_t rows) {
  if (M <= 0 || N <= 0) return TRTB_OK;
  if (!trtbe_gemv_ok(w, x, M, K, w_dtype, x_dtype, y_dtype, ldx, rows))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "gemv: unsupported call (M=%d K=%d ldx=%lld dtypes w %d x %d y %d, rows %d)", M, K,
                      (long long)ldx, w_dtype, x_dtype, y_dtype, rows);
  const bool ok = w_dtype == TRTB_DTYPE_BF16 ? by_out<__nv_bfloat16>(s, w, x, y, M, N, K, ldx, ldy, x_dtype, y_dtype, rows)
                                             : by_out<__half>(s, w, x, y, M, N, K, ldx, ldy, x_dtype, y_dtype, rows);
  if (!ok) return trtb__fail(TRTB_ERR_INTERNAL, "gemv: no instantiation for M=%d rows=%d", M, rows);
  TRTB_CUDA_CHECK_LAUNCH("gemv_kernel");
  return TRTB_OK;
}

int32_t trtbe_split16(cudaStream_t s, const float *x, int64_t ldx, void *hi, void *lo, int64_t M, int64_t K, int32_t dtype) {
  const int64_t n = M * K;
  if (n <= 0) return TRTB_OK;
  int64_t g = (n + 255) / 256;
  const unsigned grid = (unsigned)(g < 65535 * 16 ? g : 65535 * 16);
  if (dtype == TRTB_DTYPE_BF16) (void)trtbe_launch(split16_kernel_bf16, dim3(grid), dim3(256), 0, s, x, ldx, (__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo, M, K);
  else if (dtype == TRTB_DTYPE_F16) (void)trtbe_launch(split16_kernel_f16, dim3(grid), dim3(256), 0, s, x, ldx, (__half *)hi, (__half *)lo, M, K);
  else return trtb__fail(TRTB_ERR_DTYPE, "split16: dtype %d is not F16/BF16", dtype);
  TRTB_CUDA_CHECK_LAUNCH("split16_kernel");
  return TRTB_OK;
}
