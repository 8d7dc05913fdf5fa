/*
 * gemm.c: trtb_gemm_f32 and trtb_gemm_isa, the f32 matrix products of the CPU reference runner
 * (src/runtime/cpu-gemm.ts): y[M,N] = x[M,K] · W (+ bias), W either [N,K] (rows are output
 * channels, "TN": the linear layers, attention scores) or [K,N] ("NN": attention probabilities
 * times V).
 *
 * Numerics. Each output element is computed by one fixed sequence of f32 operations that depends
 * only on K and the kernel set (ISA), never on M, N, the blocking, the leading dimensions or the
 * thread count, so a one-token step gives the same bits as that row of a full prefill:
 *   TN  L lanes (16 AVX-512, 8 AVX2 and portable): lane l accumulates x[k]·w[k] for k ≡ l (mod L)
 *       in increasing k (fused multiply-add where the ISA has it; the last chunk zero-padded),
 *       then the lanes are summed by halving (lane i + lane i+L/2, ...), then the bias is added.
 *   NN  one accumulator per element, k = 0, 1, ... in order (fused on AVX2/AVX-512), then bias.
 * Zero-padding K (extra x[k] = 0 terms) leaves every TN and NN result unchanged, which is what
 * lets attention over T cached positions match attention over a longer, masked T.
 *
 * Speed. Register-blocked kernels (TN: 4 rows x 4 output channels on AVX-512, 2 x 4 on AVX2, with
 * the 16 / 8 horizontal sums done together by a transposing shuffle tree; NN: 4 rows x 64 / 16
 * columns), W cache-blocked to stay in L2 while a 4-row x panel sits in L1, and threads over N
 * (or M when N is narrow) through trtb__parallel_for once a call is large enough to pay for them.
 * The kernel set is picked at run time (__builtin_cpu_supports) so the library stays portable;
 * the portable kernels are plain C that the compiler vectorises for the baseline ISA.
 */
#include <stdatomic.h>
#include <string.h>

#include "internal.h"
#include "parallel.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#  include <immintrin.h>
#  define TRTB__GEMM_X86 1
#  define TRTB__T512 __attribute__((target("avx512f")))
#  define TRTB__T256 __attribute__((target("avx2,fma")))
#else
#  define TRTB__GEMM_X86 0
#endif

/* A thread is started only for at least this many multiply-adds: starting and joining one costs
 * tens of microseconds, about what one core needs for this much f32 work. */
#define TRTB__GEMM_MIN_MACS_PER_THREAD (1u << 19)
/* W rows per cache block: as many as fit in this many bytes (kept in L2 while x panels stream). */
#define TRTB__GEMM_W_BLOCK_BYTES (512u << 10)
/* W rows per L1 block: reused by every 4-row x block while it stays in L1. */
#ifndef TRTB__GEMM_W_L1_MAX
#  define TRTB__GEMM_W_L1_MAX 32u
#endif
#ifndef TRTB__GEMM_W_L1_BYTES
#  define TRTB__GEMM_W_L1_BYTES (32u << 10)
#endif

typedef struct {
  const float *x, *w, *bias;
  float *y;
  uint64_t m, n, k, ldx, ldw, ldy;
  int isa;
} gemm_job;

static inline uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* W rows (TN) per L2 block, a multiple of 16. */
static uint64_t w_block_rows(uint64_t k) {
  uint64_t r = TRTB__GEMM_W_BLOCK_BYTES / (4 * (k ? k : 1));
  r = r / 16 * 16;
  return r < 16 ? 16 : r;
}

/* W rows (TN) per L1 block, a multiple of 4 in [4, 32]. */
static uint64_t w_l1_rows(uint64_t k) {
  uint64_t r = TRTB__GEMM_W_L1_BYTES / (4 * (k ? k : 1));
  r = r / 4 * 4;
  return r < 4 ? 4 : r > TRTB__GEMM_W_L1_MAX ? TRTB__GEMM_W_L1_MAX : r;
}

/* ---- portable kernels -------------------------------------------------------------------------- */

#define PL 8 /* portable TN lanes */

static inline float dot_portable(const float *x, const float *w, uint64_t k) {
  float a[PL] = {0};
  uint64_t kk = 0;
  for (; kk + PL <= k; kk += PL)
    for (int l = 0; l < PL; l++) a[l] = a[l] + x[kk + l] * w[kk + l];
  for (int l = 0; kk + (uint64_t)l < k; l++) a[l] = a[l] + x[kk + l] * w[kk + l];
  for (int l = 0; l < 4; l++) a[l] = a[l] + a[l + 4];
  for (int l = 0; l < 2; l++) a[l] = a[l] + a[l + 2];
  return a[0] + a[1];
}

static void tn_portable(const gemm_job *j, uint64_t m0, uint64_t m1, uint64_t n0, uint64_t n1) {
  const uint64_t nb_rows = w_block_rows(j->k);
  for (uint64_t nb = n0; nb < n1; nb += nb_rows) {
    const uint64_t ne = min_u64(nb + nb_rows, n1);
    for (uint64_t m = m0; m < m1; m++) {
      const float *xr = j->x + m * j->ldx;
      float *yr = j->y + m * j->ldy;
      for (uint64_t n = nb; n < ne; n++) yr[n] = dot_portable(xr, j->w + n * j->ldw, j->k) + (j->bias ? j->bias[n] : 0.0f);
    }
  }
}

static void nn_portable(const gemm_job *j, uint64_t m0, uint64_t m1, uint64_t n0, uint64_t n1) {
  for (uint64_t m = m0; m < m1; m++) {
    const float *xr = j->x + m * j->ldx;
    float *yr = j->y + m * j->ldy;
    for (uint64_t n = n0; n < n1; n++) yr[n] = 0.0f;
    for (uint64_t kk = 0; kk < j->k; kk++) {
      const float xv = xr[kk];
      const float *wr = j->w + kk * j->ldw;
      for (uint64_t n = n0; n < n1; n++) yr[n] = yr[n] + xv * wr[n];
    }
    if (j->bias)
      for (uint64_t n = n0; n < n1; n++) yr[n] = yr[n] + j->bias[n];
  }
}

#if TRTB__GEMM_X86
/* ---- AVX-512 kernels (16 lanes) ---------------------------------------------------------------- */

/* out lane 4j+i = halving sum of a[4i+j]: levels 16->8 (shuffle_f32x4), 8->4, 4->2, 2->1 (shuffle_ps). */
TRTB__T512 static inline __m512 hsum16x16(const __m512 *a) {
  __m512 b[8], c[4], d[2];
  for (int p = 0; p < 8; p++)
    b[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], 0x44), _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], 0xEE));
  for (int q = 0; q < 4; q++)
    c[q] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * q], b[2 * q + 1], 0x88), _mm512_shuffle_f32x4(b[2 * q], b[2 * q + 1], 0xDD));
  for (int r = 0; r < 2; r++)
    d[r] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * r], c[2 * r + 1], 0x44), _mm512_shuffle_ps(c[2 * r], c[2 * r + 1], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));
}

/* 4 x rows by 4 W rows: lane 4j+i of the result = x_j · w_i. */
TRTB__T512 static inline __m512 tn512_4x4(const float *const *xr, const float *const *wr, uint64_t k) {
  __m512 a[16];
  for (int t = 0; t < 16; t++) a[t] = _mm512_setzero_ps();
  uint64_t kk = 0;
  for (; kk + 16 <= k; kk += 16) {
    __m512 xv[4];
    for (int jx = 0; jx < 4; jx++) xv[jx] = _mm512_loadu_ps(xr[jx] + kk);
    for (int i = 0; i < 4; i++) {
      const __m512 wv = _mm512_loadu_ps(wr[i] + kk);
      for (int jx = 0; jx < 4; jx++) a[4 * i + jx] = _mm512_fmadd_ps(xv[jx], wv, a[4 * i + jx]);
    }
  }
  if (kk < k) {
    const __mmask16 mk = (__mmask16)((1u << (k - kk)) - 1u);
    __m512 xv[4];
    for (int jx = 0; jx < 4; jx++) xv[jx] = _mm512_maskz_loadu_ps(mk, xr[jx] + kk);
    for (int i = 0; i < 4; i++) {
      const __m512 wv = _mm512_maskz_loadu_ps(mk, wr[i] + kk);
      for (int jx = 0; jx < 4; jx++) a[4 * i + jx] = _mm512_fmadd_ps(xv[jx], wv, a[4 * i + jx]);
    }
  }
  return hsum16x16(a);
}

/* 1 x row by 16 W rows: lane c of the result = x · w_c (accumulator of w_c at 4(c%4) + c/4). */
TRTB__T512 static inline __m512 tn512_1x16(const float *xr, const float *const *wr, uint64_t k) {
  __m512 a[16];
  for (int t = 0; t < 16; t++) a[t] = _mm512_setzero_ps();
  uint64_t kk = 0;
  for (; kk + 16 <= k; kk += 16) {
    const __m512 xv = _mm512_loadu_ps(xr + kk);
    for (int c = 0; c < 16; c++) a[4 * (c & 3) + (c >> 2)] = _mm512_fmadd_ps(xv, _mm512_loadu_ps(wr[c] + kk), a[4 * (c & 3) + (c >> 2)]);
  }
  if (kk < k) {
    const __mmask16 mk = (__mmask16)((1u << (k - kk)) - 1u);
    const __m512 xv = _mm512_maskz_loadu_ps(mk, xr + kk);
    for (int c = 0; c < 16; c++)
      a[4 * (c & 3) + (c >> 2)] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mk, wr[c] + kk), a[4 * (c & 3) + (c >> 2)]);
  }
  return hsum16x16(a);
}

/* Full tiles: result + bias, four 128-bit stores; edge tiles element by element. */
TRTB__T512 static inline void store_4x4(const gemm_job *j, uint64_t m, uint64_t n, uint64_t rows, uint64_t cols, __m512 v) {
  if (rows == 4 && cols == 4) {
    if (j->bias) v = _mm512_add_ps(v, _mm512_broadcast_f32x4(_mm_loadu_ps(j->bias + n)));
    float *y0 = j->y + m * j->ldy + n;
    _mm_storeu_ps(y0, _mm512_castps512_ps128(v));
    _mm_storeu_ps(y0 + j->ldy, _mm512_extractf32x4_ps(v, 1));
    _mm_storeu_ps(y0 + 2 * j->ldy, _mm512_extractf32x4_ps(v, 2));
    _mm_storeu_ps(y0 + 3 * j->ldy, _mm512_extractf32x4_ps(v, 3));
    return;
  }
  float out[16];
  _mm512_storeu_ps(out, v);
  for (uint64_t r = 0; r < rows; r++) {
    float *yr = j->y + (m + r) * j->ldy + n;
    for (uint64_t c = 0; c < cols; c++) yr[c] = out[4 * r + c] + (j->bias ? j->bias[n + c] : 0.0f);
  }
}

TRTB__T512 static void tn_avx512(const gemm_job *j, uint64_t m0, uint64_t m1, uint64_t n0, uint64_t n1) {
  const uint64_t k = j->k, nb_rows = w_block_rows(k), nb1_rows = w_l1_rows(k);
  for (uint64_t nb = n0; nb < n1; nb += nb_rows) {
    const uint64_t ne = min_u64(nb + nb_rows, n1);
    /* L1 blocks of W rows, reused by every 4-row block of x. Blocks of 4 rows; a last block of 2
     * or 3 rows repeats its last row (results dropped), which reads W once instead of 2-3 times. */
    for (uint64_t n1b = nb; n1b < ne; n1b += nb1_rows) {
      const uint64_t n1e = min_u64(n1b + nb1_rows, ne);
      for (uint64_t m = m0; m + 1 < m1; m += 4) {
        const uint64_t rows = min_u64(4, m1 - m);
        const float *xr[4];
        for (uint64_t r = 0; r < 4; r++) xr[r] = j->x + (m + min_u64(r, rows - 1)) * j->ldx;
        for (uint64_t n = n1b; n < n1e; n += 4) {
          const uint64_t cols = min_u64(4, n1e - n);
          const float *wr[4];
          for (uint64_t c = 0; c < 4; c++) wr[c] = j->w + (n + min_u64(c, cols - 1)) * j->ldw;
          store_4x4(j, m, n, rows, cols, tn512_4x4(xr, wr, k));
        }
      }
    }
    if ((m1 - m0) % 4 == 1) {
      const uint64_t m = m1 - 1;
      const float *xr = j->x + m * j->ldx;
      float *yr = j->y + m * j->ldy;
      for (uint64_t n = nb; n < ne; n += 16) {
        const uint64_t cols = min_u64(16, ne - n);
        const float *wr[16];
        for (uint64_t c = 0; c < 16; c++) wr[c] = j->w + (n + min_u64(c, cols - 1)) * j->ldw;
        __m512 v = tn512_1x16(xr, wr, k);
        const __mmask16 mc = (__mmask16)(cols == 16 ? 0xFFFFu : (1u << cols) - 1u);
        if (j->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mc, j->bias + n));
        _mm512_mask_storeu_ps(yr + n, mc, v);
      }
    }
  }
}

/* NN: 4 rows x 64 columns per block, 16 accumulators. */
TRTB__T512 static void nn_avx512(const gemm_job *j, uint64_t m0, uint64_t m1, uint64_t n0, uint64_t n1) {
  const uint64_t k = j->k, ldw = j->ldw;
  for (uint64_t m = m0; m < m1; m += 4) {
    const uint64_t rows = min_u64(4, m1 - m);
    const float *xr[4];
    for (uint64_t r = 0; r < 4; r++) xr[r] = j->x + (m + min_u64(r, rows - 1)) * j->ldx;
    for (uint64_t n = n0; n < n1; n += 64) {
      const uint64_t cols = min_u64(64, n1 - n);
      __mmask16 mv[4];
      for (uint64_t v = 0; v < 4; v++) {
        const uint64_t lo = 16 * v;
        mv[v] = (__mmask16)(cols >= lo + 16 ? 0xFFFFu : cols <= lo ? 0u : (1u << (cols - lo)) - 1u);
      }
      __m512 a[4][4];
      for (int r = 0; r < 4; r++)
        for (int v = 0; v < 4; v++) a[r][v] = _mm512_setzero_ps();
      const float *wp = j->w + n;
      for (uint64_t kk = 0; kk < k; kk++, wp += ldw) {
        __m512 wv[4];
        for (int v = 0; v < 4; v++) wv[v] = _mm512_maskz_loadu_ps(mv[v], wp + 16 * v);
        for (int r = 0; r < 4; r++) {
          const __m512 xb = _mm512_set1_ps(xr[r][kk]);
          for (int v = 0; v < 4; v++) a[r][v] = _mm512_fmadd_ps(xb, wv[v], a[r][v]);
        }
      }
      for (uint64_t r = 0; r < rows; r++) {
        float *yr = j->y + (m + r) * j->ldy + n;
        for (int v = 0; v < 4; v++) {
          if (!mv[v]) continue;
          __m512 o = a[r][v];
          if (j->bias) o = _mm512_add_ps(o, _mm512_maskz_loadu_ps(mv[v], j->bias + n + 16 * v));
          _mm512_mask_storeu_ps(yr + 16 * v, mv[v], o);
        }
      }
    }
  }
}

/* ---- AVX2 + FMA kernels (8 lanes) -------------------------------------------------------------- */

static const int32_t g_mask_src[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* First `n` (0..8) lanes set. */
TRTB__T256 static inline __m256i mask8(uint64_t n) { return _mm256_loadu_si256((const __m256i *)(g_mask_src + 8 - n)); }

/* out lane 4h+i = halving sum of a[2i+h]: levels 8->4 (permute2f128), 4->2, 2->1 (shuffle_ps). */
TRTB__T256 static inline __m256 hsum8x8(const __m256 *a) {
  __m256 b[4], c[2];
  for (int p = 0; p < 4; p++)
    b[p] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * p], a[2 * p + 1], 0x20), _mm256_permute2f128_ps(a[2 * p], a[2 * p + 1], 0x31));
  for (int q = 0; q < 2; q++)
    c[q] = _mm256_add_ps(_mm256_shuffle_ps(b[2 * q], b[2 * q + 1], 0x44), _mm256_shuffle_ps(b[2 * q], b[2 * q + 1], 0xEE));
  return _mm256_add_ps(_mm256_shuffle_ps(c[0], c[1], 0x88), _mm256_shuffle_ps(c[0], c[1], 0xDD));
}

/* 2 x rows by 4 W rows: lane 4h+i = x_h · w_i (accumulator 2i+h). */
TRTB__T256 static inline __m256 tn256_2x4(const float *const *xr, const float *const *wr, uint64_t k) {
  __m256 a[8];
  for (int t = 0; t < 8; t++) a[t] = _mm256_setzero_ps();
  uint64_t kk = 0;
  for (; kk + 8 <= k; kk += 8) {
    const __m256 x0 = _mm256_loadu_ps(xr[0] + kk), x1 = _mm256_loadu_ps(xr[1] + kk);
    for (int i = 0; i < 4; i++) {
      const __m256 wv = _mm256_loadu_ps(wr[i] + kk);
      a[2 * i] = _mm256_fmadd_ps(x0, wv, a[2 * i]);
      a[2 * i + 1] = _mm256_fmadd_ps(x1, wv, a[2 * i + 1]);
    }
  }
  if (kk < k) {
    const __m256i mk = mask8(k - kk);
    const __m256 x0 = _mm256_maskload_ps(xr[0] + kk, mk), x1 = _mm256_maskload_ps(xr[1] + kk, mk);
    for (int i = 0; i < 4; i++) {
      const __m256 wv = _mm256_maskload_ps(wr[i] + kk, mk);
      a[2 * i] = _mm256_fmadd_ps(x0, wv, a[2 * i]);
      a[2 * i + 1] = _mm256_fmadd_ps(x1, wv, a[2 * i + 1]);
    }
  }
  return hsum8x8(a);
}

/* 1 x row by 8 W rows: lane c = x · w_c (accumulator of w_c at 2(c%4) + c/4). */
TRTB__T256 static inline __m256 tn256_1x8(const float *xr, const float *const *wr, uint64_t k) {
  __m256 a[8];
  for (int t = 0; t < 8; t++) a[t] = _mm256_setzero_ps();
  uint64_t kk = 0;
  for (; kk + 8 <= k; kk += 8) {
    const __m256 xv = _mm256_loadu_ps(xr + kk);
    for (int c = 0; c < 8; c++) a[2 * (c & 3) + (c >> 2)] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(wr[c] + kk), a[2 * (c & 3) + (c >> 2)]);
  }
  if (kk < k) {
    const __m256i mk = mask8(k - kk);
    const __m256 xv = _mm256_maskload_ps(xr + kk, mk);
    for (int c = 0; c < 8; c++)
      a[2 * (c & 3) + (c >> 2)] = _mm256_fmadd_ps(xv, _mm256_maskload_ps(wr[c] + kk, mk), a[2 * (c & 3) + (c >> 2)]);
  }
  return hsum8x8(a);
}

TRTB__T256 static void tn_avx2(const gemm_job *j, uint64_t m0, uint64_t m1, uint64_t n0, uint64_t n1) {
  const uint64_t k = j->k, nb_rows = w_block_rows(k);
  float out[8];
  for (uint64_t nb = n0; nb < n1; nb += nb_rows) {
    const uint64_t ne = min_u64(nb + nb_rows, n1);
    uint64_t m = m0;
    for (; m + 2 <= m1; m += 2) {
      const float *xr[2] = {j->x + m * j->ldx, j->x + (m + 1) * j->ldx};
      for (uint64_t n = nb; n < ne; n += 4) {
        const uint64_t cols = min_u64(4, ne - n);
        const float *wr[4];
        for (uint64_t c = 0; c < 4; c++) wr[c] = j->w + (n + min_u64(c, cols - 1)) * j->ldw;
        _mm256_storeu_ps(out, tn256_2x4(xr, wr, k));
        for (uint64_t r = 0; r < 2; r++) {
          float *yr = j->y + (m + r) * j->ldy + n;
          for (uint64_t c = 0; c < cols; c++) yr[c] = out[4 * r + c] + (j->bias ? j->bias[n + c] : 0.0f);
        }
      }
    }
    for (; m < m1; m++) {
      const float *xr = j->x + m * j->ldx;
      float *yr = j->y + m * j->ldy;
      for (uint64_t n = nb; n < ne; n += 8) {
        const uint64_t cols = min_u64(8, ne - n);
        const float *wr[8];
        for (uint64_t c = 0; c < 8; c++) wr[c] = j->w + (n + min_u64(c, cols - 1)) * j->ldw;
        __m256 v = tn256_1x8(xr, wr, k);
        const __m256i mc = mask8(cols);
        if (j->bias) v = _mm256_add_ps(v, _mm256_maskload_ps(j->bias + n, mc));
        _mm256_maskstore_ps(yr + n, mc, v);
      }
    }
  }
}

/* NN: 4 rows x 16 columns per block, 8 accumulators. */
TRTB__T256 static void nn_avx2(const gemm_job *j, uint64_t m0, uint64_t m1, uint64_t n0, uint64_t n1) {
  const uint64_t k = j->k, ldw = j->ldw;
  for (uint64_t m = m0; m < m1; m += 4) {
    const uint64_t rows = min_u64(4, m1 - m);
    const float *xr[4];
    for (uint64_t r = 0; r < 4; r++) xr[r] = j->x + (m + min_u64(r, rows - 1)) * j->ldx;
    for (uint64_t n = n0; n < n1; n += 16) {
      const uint64_t cols = min_u64(16, n1 - n);
      const __m256i mv[2] = {mask8(min_u64(cols, 8)), mask8(cols > 8 ? cols - 8 : 0)};
      __m256 a[4][2];
      for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
      const float *wp = j->w + n;
      for (uint64_t kk = 0; kk < k; kk++, wp += ldw) {
        const __m256 w0 = _mm256_maskload_ps(wp, mv[0]), w1 = _mm256_maskload_ps(wp + 8, mv[1]);
        for (int r = 0; r < 4; r++) {
          const __m256 xb = _mm256_broadcast_ss(xr[r] + kk);
          a[r][0] = _mm256_fmadd_ps(xb, w0, a[r][0]);
          a[r][1] = _mm256_fmadd_ps(xb, w1, a[r][1]);
        }
      }
      for (uint64_t r = 0; r < rows; r++) {
        float *yr = j->y + (m + r) * j->ldy + n;
        for (int v = 0; v < 2; v++) {
          __m256 o = a[r][v];
          if (j->bias) o = _mm256_add_ps(o, _mm256_maskload_ps(j->bias + n + 8 * v, mv[v]));
          _mm256_maskstore_ps(yr + 8 * v, mv[v], o);
        }
      }
    }
  }
}
#endif /* TRTB__GEMM_X86 */

/* ---- dispatch ---------------------------------------------------------------------------------- */

static atomic_int g_isa_request; /* TRTB_GEMM_ISA_AUTO or a forced set */

static int isa_supported(int isa) {
  if (isa == TRTB_GEMM_ISA_PORTABLE) return 1;
#if TRTB__GEMM_X86
  __builtin_cpu_init();
  if (isa == TRTB_GEMM_ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == TRTB_GEMM_ISA_AVX512) return __builtin_cpu_supports("avx512f");
#endif
  return 0;
}

static int isa_now(void) {
  const int req = atomic_load_explicit(&g_isa_request, memory_order_relaxed);
  if (req != TRTB_GEMM_ISA_AUTO) return req;
  if (isa_supported(TRTB_GEMM_ISA_AVX512)) return TRTB_GEMM_ISA_AVX512;
  if (isa_supported(TRTB_GEMM_ISA_AVX2)) return TRTB_GEMM_ISA_AVX2;
  return TRTB_GEMM_ISA_PORTABLE;
}

TRTB_API int32_t trtb_gemm_isa(int32_t request) {
  if (request == -1) return isa_now();
  if (request < TRTB_GEMM_ISA_AUTO || request > TRTB_GEMM_ISA_AVX512)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "trtb_gemm_isa: %d is not a TRTB_GEMM_ISA_* value (or -1)", request);
  if (request != TRTB_GEMM_ISA_AUTO && !isa_supported(request))
    return trtb__fail(TRTB_ERR_UNSUPPORTED, "trtb_gemm_isa: this CPU (or build) has no kernel set %d", request);
  atomic_store(&g_isa_request, request);
  return isa_now();
}

static void run_block(const gemm_job *j, int kn, uint64_t m0, uint64_t m1, uint64_t n0, uint64_t n1) {
  switch (j->isa) {
#if TRTB__GEMM_X86
    case TRTB_GEMM_ISA_AVX512: (kn ? nn_avx512 : tn_avx512)(j, m0, m1, n0, n1); return;
    case TRTB_GEMM_ISA_AVX2: (kn ? nn_avx2 : tn_avx2)(j, m0, m1, n0, n1); return;
#endif
    default: (kn ? nn_portable : tn_portable)(j, m0, m1, n0, n1); return;
  }
}

static void range_tn_n(void *p, uint64_t b, uint64_t e) { const gemm_job *j = p; run_block(j, 0, 0, j->m, b, e); }
static void range_tn_m(void *p, uint64_t b, uint64_t e) { const gemm_job *j = p; run_block(j, 0, b, e, 0, j->n); }
static void range_nn_n(void *p, uint64_t b, uint64_t e) { const gemm_job *j = p; run_block(j, 1, 0, j->m, b, e); }
static void range_nn_m(void *p, uint64_t b, uint64_t e) { const gemm_job *j = p; run_block(j, 1, b, e, 0, j->n); }

/* ---- argument checks --------------------------------------------------------------------------- */

/* Elements spanned by `rows` rows of `cols` at stride `ld`; 0 on overflow (with *ok = 0). */
static uint64_t span(uint64_t rows, uint64_t ld, uint64_t cols, int *ok) {
  if (rows == 0 || cols == 0) return 0;
  if (rows - 1 > (UINT64_MAX / 4 - cols) / (ld ? ld : 1)) {
    *ok = 0;
    return 0;
  }
  return (rows - 1) * ld + cols;
}

static int overlaps(const void *a, uint64_t an, const void *b, uint64_t bn) {
  if (!a || !b || an == 0 || bn == 0) return 0;
  const uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
  return a0 < b0 + bn && b0 < a0 + an;
}

TRTB_API int32_t trtb_gemm_f32(const float *x, uint64_t x_bytes, const float *w, uint64_t w_bytes, const float *bias,
                               uint64_t bias_bytes, float *y, uint64_t y_bytes, uint64_t m, uint64_t n, uint64_t k,
                               uint64_t ldx, uint64_t ldw, uint64_t ldy, uint32_t flags) {
  static const char *fn = "trtb_gemm_f32";
  if (flags & ~(uint32_t)TRTB_GEMM_W_KN) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: unknown flag bits 0x%x", fn, flags);
  const int kn = (flags & TRTB_GEMM_W_KN) != 0;
  if ((!x && x_bytes) || (!w && w_bytes) || (!bias && bias_bytes) || (!y && y_bytes))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: a NULL buffer with a non-zero length", fn);
  if (((uintptr_t)x | (uintptr_t)w | (uintptr_t)bias | (uintptr_t)y) & 3u)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: a buffer is not 4-byte aligned", fn);
  const uint64_t wcols = kn ? n : k, wrows = kn ? k : n;
  if (m && ldx < k) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: ldx %llu < k %llu", fn, (unsigned long long)ldx, (unsigned long long)k);
  if (m && ldy < n) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: ldy %llu < n %llu", fn, (unsigned long long)ldy, (unsigned long long)n);
  if (wrows && ldw < wcols)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: ldw %llu < %llu (the length of a W row)", fn, (unsigned long long)ldw,
                      (unsigned long long)wcols);
  int ok = 1;
  const uint64_t xs = span(m, ldx, k, &ok), ws = span(wrows, ldw, wcols, &ok), ys = span(m, ldy, n, &ok);
  if (!ok || n > UINT64_MAX / 4) return trtb__fail(TRTB_ERR_SIZE, "%s: matrix extents overflow uint64", fn);
  if (x_bytes < xs * 4 || w_bytes < ws * 4 || y_bytes < ys * 4)
    return trtb__fail(TRTB_ERR_SIZE,
                      "%s: m %llu, n %llu, k %llu need x >= %llu, w >= %llu, y >= %llu bytes; got %llu, %llu, %llu", fn,
                      (unsigned long long)m, (unsigned long long)n, (unsigned long long)k, (unsigned long long)xs * 4,
                      (unsigned long long)ws * 4, (unsigned long long)ys * 4, (unsigned long long)x_bytes,
                      (unsigned long long)w_bytes, (unsigned long long)y_bytes);
  if (bias_bytes != 0 && bias_bytes != n * 4)
    return trtb__fail(TRTB_ERR_SIZE, "%s: bias_bytes must be 0 (no bias) or n * 4 = %llu, got %llu", fn,
                      (unsigned long long)n * 4, (unsigned long long)bias_bytes);
  if (overlaps(y, ys * 4, x, xs * 4) || overlaps(y, ys * 4, w, ws * 4) || overlaps(y, ys * 4, bias, bias_bytes))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: y overlaps x, w or bias", fn);
  if (m == 0 || n == 0) return TRTB_OK;

  gemm_job j = {x, w, bias_bytes ? bias : NULL, y, m, n, k, ldx, ldw, ldy, isa_now()};
  if (k == 0) {
    for (uint64_t r = 0; r < m; r++)
      for (uint64_t c = 0; c < n; c++) y[r * ldy + c] = j.bias ? j.bias[c] : 0.0f;
    return TRTB_OK;
  }
  /* Threads: over N in 16-column units while there are enough of them (each thread keeps its part of
   * W in its own cache), else over M in 4-row units; at least MIN_MACS per thread. */
  const uint64_t threads = (uint64_t)trtb__num_threads();
  const double macs = (double)m * (double)n * (double)k;
  if (threads <= 1 || macs < 2.0 * TRTB__GEMM_MIN_MACS_PER_THREAD) {
    run_block(&j, kn, 0, m, 0, n);
    return TRTB_OK;
  }
  if (n >= 32 * threads || m < 8) {
    const uint64_t grain = (uint64_t)(TRTB__GEMM_MIN_MACS_PER_THREAD / ((double)m * (double)k)) + 1;
    trtb__parallel_for(n, grain, 16, kn ? range_nn_n : range_tn_n, &j);
  } else {
    const uint64_t grain = (uint64_t)(TRTB__GEMM_MIN_MACS_PER_THREAD / ((double)n * (double)k)) + 1;
    trtb__parallel_for(m, grain, 4, kn ? range_nn_m : range_tn_m, &j);
  }
  return TRTB_OK;
}

/* ---- gated activation: y = act(a) * g ----------------------------------------------------------
 * act(v) = v / (1 + exp(-z)): z = v (SiLU), or z = 2 sqrt(2/pi) (v + 0.044715 v^3) (GELU, tanh form:
 * 0.5 v (1 + tanh(u)) = v / (1 + exp(-2u))). exp is a branch-free Cephes-style f32 polynomial
 * (max error ~2 ulp over the clamped range), written so the compiler vectorises it; the same
 * scalar operations run on every ISA (no fused multiply-add), so results do not depend on the CPU's
 * kernel set or on the thread count. */

/* exp(x) for x in [-86.6, 89] (clamped outside; above 88.72 the result is inf, as it should be):
 * 2^n scaled in two steps so that n = 128 stays finite where exp(x) is. */
static inline float exp_f32(float x) {
  x = x < -86.6f ? -86.6f : x;
  x = x > 89.0f ? 89.0f : x;
  const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f; /* round(x / ln 2) */
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t bits = ((int32_t)n + 126) << 23; /* 2^(n-1) */
  float s;
  memcpy(&s, &bits, sizeof s);
  return (p * s) * 2.0f;
}

typedef struct {
  const float *a, *g;
  float *y;
  uint64_t cols, lda, ldg;
  int32_t act;
} act_job;

#if TRTB__GEMM_X86 && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void act_rows(const act_job *j, uint64_t r0, uint64_t r1) {
  const uint64_t cols = j->cols;
  for (uint64_t r = r0; r < r1; r++) {
    const float *a = j->a + r * j->lda, *g = j->g + r * j->ldg;
    float *y = j->y + r * cols;
    if (j->act == TRTB_ACT_SILU) {
      for (uint64_t c = 0; c < cols; c++) y[c] = a[c] / (1.0f + exp_f32(-a[c])) * g[c];
    } else {
      for (uint64_t c = 0; c < cols; c++) {
        const float v = a[c];
        const float z = 1.5957691216f * (v + 0.044715f * (v * v * v));
        y[c] = v / (1.0f + exp_f32(-z)) * g[c];
      }
    }
  }
}

static void range_act(void *p, uint64_t b, uint64_t e) { act_rows((const act_job *)p, b, e); }

/* Split across threads only with at least this many elements per thread. */
#define TRTB__ACT_GRAIN_ELEMS (1u << 16)

TRTB_API int32_t trtb_gated_act_f32(const float *a, uint64_t a_bytes, const float *g, uint64_t g_bytes, float *y,
                                    uint64_t y_bytes, uint64_t rows, uint64_t cols, uint64_t lda, uint64_t ldg,
                                    int32_t act) {
  static const char *fn = "trtb_gated_act_f32";
  if (act != TRTB_ACT_SILU && act != TRTB_ACT_GELU_TANH)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: act %d is not a TRTB_ACT_* value", fn, act);
  if ((!a && a_bytes) || (!g && g_bytes) || (!y && y_bytes))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: a NULL buffer with a non-zero length", fn);
  if (((uintptr_t)a | (uintptr_t)g | (uintptr_t)y) & 3u)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: a buffer is not 4-byte aligned", fn);
  if (rows && (lda < cols || ldg < cols))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: lda %llu or ldg %llu < cols %llu", fn, (unsigned long long)lda,
                      (unsigned long long)ldg, (unsigned long long)cols);
  int ok = 1;
  const uint64_t as = span(rows, lda, cols, &ok), gs = span(rows, ldg, cols, &ok), ys = span(rows, cols, cols, &ok);
  if (!ok) return trtb__fail(TRTB_ERR_SIZE, "%s: extents overflow uint64", fn);
  if (a_bytes < as * 4 || g_bytes < gs * 4 || y_bytes < ys * 4)
    return trtb__fail(TRTB_ERR_SIZE, "%s: rows %llu, cols %llu need a >= %llu, g >= %llu, y >= %llu bytes; got %llu, %llu, %llu",
                      fn, (unsigned long long)rows, (unsigned long long)cols, (unsigned long long)as * 4,
                      (unsigned long long)gs * 4, (unsigned long long)ys * 4, (unsigned long long)a_bytes,
                      (unsigned long long)g_bytes, (unsigned long long)y_bytes);
  if (overlaps(y, ys * 4, a, as * 4) || overlaps(y, ys * 4, g, gs * 4))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: y overlaps a or g", fn);
  if (rows == 0 || cols == 0) return TRTB_OK;
  act_job j = {a, g, y, cols, lda, ldg, act};
  trtb__parallel_for(rows, TRTB__ACT_GRAIN_ELEMS / cols + 1, 1, range_act, &j);
  return TRTB_OK;
}
