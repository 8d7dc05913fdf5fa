/*
 * gemm.cu: every GEMM of the engine, through cuBLASLt or our GEMV kernel, and the build-time
 * tuner that times the candidates.
 *
 * Row-major y[M,N] = x[M,K] . w[N,K]^T is, in cuBLASLt's column-major terms, D(N x M) = op(A) B
 * with A = w viewed as K x N (ld K) and op(A) = T, B = x viewed as K x M (ld ldx): the "TN" layout,
 * so weights are used exactly as the checkpoint stores them ([out, in]) with no transpose.
 * fp32 compute and scale; inputs F16/BF16; output F32, F16 or BF16.
 *
 * Descriptors are cached per exact shape in the context. A saved algorithm (a tactic chosen at
 * build time for a token-count bucket) is checked once per exact shape with
 * cublasLtMatmulAlgoCheck; when it does not apply, the heuristic's answer for that shape is used.
 */
#include <algorithm>
#include <stddef.h>
#include <string.h>
#include <vector>

#include "ctx.h"
#include "kernels/fp8.cuh"
#include "kernels/int8.cuh"
#include "kernels/rowq.cuh"

#define LT_TRY(call)                                                     \
  do {                                                                   \
    cublasStatus_t lt_s_ = (call);                                       \
    if (lt_s_ != CUBLAS_STATUS_SUCCESS) return lt_fail(lt_s_, #call, __LINE__); \
  } while (0)

static int32_t lt_fail(cublasStatus_t s, const char *what, int line) {
  int32_t st = TRTB_ERR_CUDA;
  if (s == CUBLAS_STATUS_ALLOC_FAILED) st = TRTB_ERR_CUDA_OUT_OF_MEMORY;
  else if (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_ARCH_MISMATCH) st = TRTB_ERR_UNSUPPORTED;
  else if (s == CUBLAS_STATUS_INVALID_VALUE) st = TRTB_ERR_INVALID_ARG;
  (void)cudaGetLastError();
  return trtb__fail(st, "%s failed: %s (%d) [gemm.cu:%d]", what, cublasLtGetStatusString(s), (int)s, line);
}

static cudaDataType_t cuda_type(int32_t dt) {
  switch (dt) {
    case TRTB_DTYPE_F32: return CUDA_R_32F;
    case TRTB_DTYPE_F16: return CUDA_R_16F;
    case TRTB_DTYPE_F8_E4M3: return CUDA_R_8F_E4M3;
    case TRTB_DTYPE_I8: return CUDA_R_8I;
    case TRTB_DTYPE_I32: return CUDA_R_32I;
    default: return CUDA_R_16BF;
  }
}

/* The cache key of one GEMM shape (zeroed first: it is hashed and compared as bytes). */
static trtbe_gemm_key gemm_key(int32_t m, int32_t n, int32_t k, int32_t ab, int32_t y, int64_t ldx, int64_t ldy) {
  trtbe_gemm_key key;
  memset(&key, 0, sizeof key);
  key.m = m;
  key.n = n;
  key.k = k;
  key.ab = ab;
  key.y = y;
  key.ldx = ldx;
  key.ldy = ldy;
  return key;
}

static uint64_t key_hash(const trtbe_gemm_key &k) {
  uint64_t h = 1469598103934665603ull;
  const unsigned char *p = reinterpret_cast<const unsigned char *>(&k);
  for (size_t i = 0; i < sizeof k; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static void entry_free(trtbe_gemm_entry *e) {
  if (!e->used) return;
  if (e->A) cublasLtMatrixLayoutDestroy(e->A);
  if (e->B) cublasLtMatrixLayoutDestroy(e->B);
  if (e->C) cublasLtMatrixLayoutDestroy(e->C);
  if (e->desc) cublasLtMatmulDescDestroy(e->desc);
  memset(e, 0, sizeof *e);
}

static int32_t entry_make(trtbe_gemm_entry *e, const trtbe_gemm_key &k) {
  memset(e, 0, sizeof *e);
  e->key = k;
  e->used = 1;
  const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
  int32_t st = TRTB_OK;
  cublasStatus_t s;
#define LT_E(call)                                   \
  if ((s = (call)) != CUBLAS_STATUS_SUCCESS) {       \
    st = lt_fail(s, #call, __LINE__);                \
    entry_free(e);                                   \
    return st;                                       \
  }
  // int8 x int8 -> int32 (SmoothQuant): integer compute and scale; everything else fp32
  const bool i8 = k.ab == TRTB_DTYPE_I8;
  LT_E(cublasLtMatmulDescCreate(&e->desc, i8 ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_32F, i8 ? CUDA_R_32I : CUDA_R_32F));
  LT_E(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT));
  LT_E(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN));
  LT_E(cublasLtMatrixLayoutCreate(&e->A, cuda_type(k.ab), (uint64_t)k.k, (uint64_t)k.n, (int64_t)k.k));
  LT_E(cublasLtMatrixLayoutCreate(&e->B, cuda_type(k.ab), (uint64_t)k.k, (uint64_t)k.m, k.ldx));
  LT_E(cublasLtMatrixLayoutCreate(&e->C, cuda_type(k.y), (uint64_t)k.n, (uint64_t)k.m, k.ldy));
#undef LT_E
  return TRTB_OK;
}

int32_t trtbe_gemm_ctx_init(trtb_engine_ctx *ctx) {
  ctx->gemm_cap = 1024;
  ctx->gemm = (trtbe_gemm_entry *)calloc((size_t)ctx->gemm_cap, sizeof(trtbe_gemm_entry));
  if (!ctx->gemm) return trtb__fail(TRTB_ERR_OUT_OF_MEMORY, "engine: out of host memory (GEMM cache)");
  LT_TRY(cublasLtCreate(&ctx->lt));
  return TRTB_OK;
}

void trtbe_gemm_ctx_free(trtb_engine_ctx *ctx) {
  if (ctx->gemm) {
    for (int i = 0; i < ctx->gemm_cap; i++) entry_free(&ctx->gemm[i]);
    free(ctx->gemm);
    ctx->gemm = nullptr;
  }
  if (ctx->lt) {
    cublasLtDestroy(ctx->lt);
    ctx->lt = nullptr;
  }
}

/* The cache entry for a shape, created on first use (the whole cache is dropped when 3/4 full). */
static int32_t entry_get(trtb_engine_ctx *ctx, const trtbe_gemm_key &k, trtbe_gemm_entry **out) {
  if (ctx->gemm_count * 4 >= ctx->gemm_cap * 3) {
    for (int i = 0; i < ctx->gemm_cap; i++) entry_free(&ctx->gemm[i]);
    ctx->gemm_count = 0;
  }
  const uint64_t h = key_hash(k);
  for (int probe = 0; probe < ctx->gemm_cap; probe++) {
    trtbe_gemm_entry *e = &ctx->gemm[(h + probe) % ctx->gemm_cap];
    if (e->used && memcmp(&e->key, &k, sizeof k) == 0) {
      *out = e;
      return TRTB_OK;
    }
    if (!e->used) {
      int32_t st = entry_make(e, k);
      if (st != TRTB_OK) return st;
      ctx->gemm_count++;
      *out = e;
      return TRTB_OK;
    }
  }
  return trtb__fail(TRTB_ERR_INTERNAL, "engine: GEMM cache full");
}

static int32_t heuristic(trtb_engine_ctx *ctx, trtbe_gemm_entry *e, int count, cublasLtMatmulHeuristicResult_t *res,
                         int *n_res) {
  cublasLtMatmulPreference_t pref = nullptr;
  LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
  uint64_t ws = ctx->ws_bytes;
  cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulAlgoGetHeuristic(ctx->lt, e->desc, e->A, e->B, e->C, e->C, pref, count, res, n_res);
  cublasLtMatmulPreferenceDestroy(pref);
  if (s != CUBLAS_STATUS_SUCCESS) return lt_fail(s, "cublasLtMatmulAlgoGetHeuristic", __LINE__);
  return TRTB_OK;
}

static int32_t heur_algo(trtb_engine_ctx *ctx, trtbe_gemm_entry *e, const cublasLtMatmulAlgo_t **algo) {
  if (e->heur_state == 0) {
    cublasLtMatmulHeuristicResult_t r;
    int n = 0;
    int32_t st = heuristic(ctx, e, 1, &r, &n);
    if (st != TRTB_OK) return st;
    if (n < 1 || r.state != CUBLAS_STATUS_SUCCESS) {
      e->heur_state = -1;
    } else {
      e->heur = r.algo;
      e->heur_state = 1;
    }
  }
  if (e->heur_state < 0)
    return trtb__fail(TRTB_ERR_UNSUPPORTED, "cuBLASLt has no algorithm for GEMM m=%d n=%d k=%d (dtypes %d -> %d)", e->key.m,
                      e->key.n, e->key.k, e->key.ab, e->key.y);
  *algo = &e->heur;
  return TRTB_OK;
}

/* Is saved tactic `id` valid for this exact shape? Checked once per (shape, tactic). */
static int tactic_ok(trtb_engine_ctx *ctx, trtbe_gemm_entry *e, int32_t id) {
  for (int i = 0; i < e->n_checked; i++)
    if (e->checked_id[i] == id) return e->checked_ok[i];
  cublasLtMatmulHeuristicResult_t r;
  memset(&r, 0, sizeof r);
  cublasStatus_t s = cublasLtMatmulAlgoCheck(ctx->lt, e->desc, e->A, e->B, e->C, e->C, &ctx->tactics[id].algo, &r);
  const int ok = s == CUBLAS_STATUS_SUCCESS && r.workspaceSize <= ctx->ws_bytes;
  const int slot = e->n_checked < TRTBE_CHECKED ? e->n_checked++ : (int)(id % TRTBE_CHECKED);
  e->checked_id[slot] = id;
  e->checked_ok[slot] = (int8_t)ok;
  return ok;
}

static int32_t run_lt(trtb_engine_ctx *ctx, trtbe_gemm_entry *e, const cublasLtMatmulAlgo_t *algo, const void *w,
                      const void *x, void *y, float beta = 0.f, float alpha = 1.f) {
  LT_TRY(cublasLtMatmul(ctx->lt, e->desc, &alpha, w, e->A, x, e->B, &beta, y, e->C, y, e->C, algo, ctx->ws, ctx->ws_bytes,
                        ctx->stream));
  return TRTB_OK;
}

/* One cuBLASLt GEMM (x in w's dtype): the tactic's algorithm when valid for this shape, else the heuristic's. */
static int32_t gemm16(trtb_engine_ctx *ctx, const void *w, const void *x, void *y, int32_t m, int32_t n, int32_t k, int32_t ab,
                      int32_t yt, int64_t ldx, int64_t ldy, const trtbe_tactic *t, int32_t tactic, float beta, float alpha = 1.f) {
  const trtbe_gemm_key key = gemm_key(m, n, k, ab, yt, ldx, ldy);
  trtbe_gemm_entry *e = nullptr;
  int32_t st = entry_get(ctx, key, &e);
  if (st != TRTB_OK) return st;
  if (t && t->kind == TRTB_TACTIC_CUBLASLT && tactic_ok(ctx, e, tactic)) return run_lt(ctx, e, &t->algo, w, x, y, beta, alpha);
  const cublasLtMatmulAlgo_t *algo = nullptr;
  if ((st = heur_algo(ctx, e, &algo)) != TRTB_OK) return st;
  return run_lt(ctx, e, algo, w, x, y, beta, alpha);
}

int32_t trtbe_gemm(trtb_engine_ctx *ctx, const void *w, const void *x, void *y, int32_t m, int32_t n, int32_t k, int32_t ab,
                   int32_t yt, int64_t ldx, int64_t ldy, int32_t tactic, int32_t xt, void *scratch) {
  if (m <= 0 || n <= 0) return TRTB_OK;
  if (k <= 0 || !TRTBE_DTYPE_OK16(ab) || !(yt == TRTB_DTYPE_F32 || TRTBE_DTYPE_OK16(yt)) || !(xt == ab || xt == TRTB_DTYPE_F32))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm: bad shape or dtypes (m=%d n=%d k=%d, w %d x %d -> %d)", m, n, k, ab, xt, yt);
  if (ldx < k || ldy < n) return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm: ldx %lld < k %d or ldy %lld < n %d", (long long)ldx, k, (long long)ldy, n);
  if (tactic >= ctx->n_tactics) return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm: tactic %d is not registered", tactic);
  const trtbe_tactic *t = tactic >= 0 ? &ctx->tactics[tactic] : nullptr;
  if (xt == TRTB_DTYPE_F32) {
    // exact path: activations stay f32
    if (yt != TRTB_DTYPE_F32) return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm: an f32 input needs an f32 output");
    const int rows = t && t->kind == TRTB_TACTIC_GEMV ? t->variant : 2;
    if (trtbe_gemv_ok(w, x, m, k, ab, xt, yt, ldx, rows)) return trtbe_gemv(ctx->stream, w, x, y, m, n, k, ab, xt, yt, ldx, ldy, rows);
    if (!scratch) return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm: f32 input with m=%d needs a scratch buffer", m);
    char *hi = (char *)scratch, *lo = hi + (size_t)m * k * 2;
    int32_t st = trtbe_split16(ctx->stream, (const float *)x, ldx, hi, lo, m, k, ab);
    if (st != TRTB_OK) return st;
    if ((st = gemm16(ctx, w, hi, y, m, n, k, ab, yt, k, ldy, t, tactic, 0.f)) != TRTB_OK) return st;
    return gemm16(ctx, w, lo, y, m, n, k, ab, yt, k, ldy, t, tactic, 1.f);
  }
  if (t && t->kind == TRTB_TACTIC_GEMV && trtbe_gemv_ok(w, x, m, k, ab, xt, yt, ldx, t->variant))
    return trtbe_gemv(ctx->stream, w, x, y, m, n, k, ab, xt, yt, ldx, ldy, t->variant);
  return gemm16(ctx, w, x, y, m, n, k, ab, yt, ldx, ldy, t, tactic, 0.f);
}

/* SmoothQuant W8A8: acc[M,N] = x . w^T in int32 through cuBLASLt (int8 TN, ld K), then
 * y = acc · a · ws[n] (· xs[m]: per-token inputs) (rowq.cu). `acc` holds M·N int32. */
int32_t trtbe_gemm_i8(trtb_engine_ctx *ctx, const void *w, const void *x, int32_t *acc, void *y, int32_t m, int32_t n, int32_t k,
                      int32_t yt, int64_t ldy, float a, const float *ws, int32_t tactic, const float *xs) {
  if (m <= 0 || n <= 0) return TRTB_OK;
  if (k <= 0 || k % 4 || !(yt == TRTB_DTYPE_F32 || TRTBE_DTYPE_OK16(yt)) || ldy < n || !acc || !ws)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_i8: bad shape or arguments (m=%d n=%d k=%d, y %d, ldy %lld; k a multiple of 4)", m, n, k, yt,
                      (long long)ldy);
  if (tactic >= ctx->n_tactics) return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_i8: tactic %d is not registered", tactic);
  const trtbe_gemm_key key = gemm_key(m, n, k, TRTB_DTYPE_I8, TRTB_DTYPE_I32, k, n);
  trtbe_gemm_entry *e = nullptr;
  int32_t st = entry_get(ctx, key, &e);
  if (st != TRTB_OK) return st;
  const trtbe_tactic *t = tactic >= 0 ? &ctx->tactics[tactic] : nullptr;
  const cublasLtMatmulAlgo_t *algo = nullptr;
  if (t && t->kind == TRTB_TACTIC_CUBLASLT && tactic_ok(ctx, e, tactic)) algo = &t->algo;
  else if ((st = heur_algo(ctx, e, &algo)) != TRTB_OK) return st;
  const int32_t one = 1, zero = 0;
  LT_TRY(cublasLtMatmul(ctx->lt, e->desc, &one, w, e->A, x, e->B, &zero, acc, e->C, acc, e->C, algo, ctx->ws, ctx->ws_bytes, ctx->stream));
  return trtbe_dequant_acc(ctx->stream, acc, false, ws, a, xs, y, yt, ldy, m, n);
}

/* FP8: A = w, B = x both e4m3 (TN, ld K), fp32 compute and scale; the scales' product is alpha.
 * With `scratch` (2·(n + m)·k bytes) the exact path: both operands widened to bf16 (exactly) and
 * multiplied with full fp32 accumulation, where Hopper's FP8 tensor cores keep fewer bits while
 * accumulating (the CPU runner's sums, up to their order). */
static int32_t gemm_fp8_run(trtb_engine_ctx *ctx, const void *w, const void *x, void *y, int32_t m, int32_t n, int32_t k, int32_t yt,
                            int64_t ldy, float alpha, int32_t tactic, void *scratch) {
  if (k <= 0 || k % 16 || !(yt == TRTB_DTYPE_F32 || TRTBE_DTYPE_OK16(yt)) || ldy < n)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_fp8: bad shape or dtype (m=%d n=%d k=%d, y %d, ldy %lld; k must be a multiple of 16)", m,
                      n, k, yt, (long long)ldy);
  if (tactic >= ctx->n_tactics) return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_fp8: tactic %d is not registered", tactic);
  if (scratch) {
    char *wb = (char *)scratch, *xb = wb + (size_t)n * k * 2;
    int32_t st = trtbe_fp8_to_bf16(ctx->stream, w, wb, (int64_t)n * k);
    if (st == TRTB_OK) st = trtbe_fp8_to_bf16(ctx->stream, x, xb, (int64_t)m * k);
    if (st != TRTB_OK) return st;
    return gemm16(ctx, wb, xb, y, m, n, k, TRTB_DTYPE_BF16, yt, k, ldy, nullptr, -1, 0.f, alpha);
  }
  const trtbe_tactic *tg = tactic >= 0 ? &ctx->tactics[tactic] : nullptr;
  if (tg && tg->kind == TRTB_TACTIC_GEMV && trtbe_gemv_fp8_ok(w, x, m, k, yt, tg->variant))
    return trtbe_gemv_fp8(ctx->stream, w, x, y, m, n, k, yt, ldy, alpha, tg->variant);
  const trtbe_gemm_key key = gemm_key(m, n, k, TRTB_DTYPE_F8_E4M3, yt, k, ldy);
  trtbe_gemm_entry *e = nullptr;
  int32_t st = entry_get(ctx, key, &e);
  if (st != TRTB_OK) return st;
  const trtbe_tactic *t = tactic >= 0 ? &ctx->tactics[tactic] : nullptr;
  if (t && t->kind == TRTB_TACTIC_CUBLASLT && tactic_ok(ctx, e, tactic)) return run_lt(ctx, e, &t->algo, w, x, y, 0.f, alpha);
  const cublasLtMatmulAlgo_t *algo = nullptr;
  if ((st = heur_algo(ctx, e, &algo)) != TRTB_OK) return st;
  return run_lt(ctx, e, algo, w, x, y, 0.f, alpha);
}

/* FP8 GEMM; with per-column weight scales ws (FP8_PER_CHANNEL_PER_TOKEN) the product lands in acc
 * (f32 [m, n]) and is scaled acc · alpha · ws[n] · xs[m] (xs: the per-token input scales) into y. */
int32_t trtbe_gemm_fp8(trtb_engine_ctx *ctx, const void *w, const void *x, void *y, int32_t m, int32_t n, int32_t k, int32_t yt,
                       int64_t ldy, float alpha, int32_t tactic, void *scratch, float *acc, const float *xs, const float *ws) {
  if (m <= 0 || n <= 0) return TRTB_OK;
  if (!ws) return gemm_fp8_run(ctx, w, x, y, m, n, k, yt, ldy, alpha, tactic, scratch);
  if (!acc || !(yt == TRTB_DTYPE_F32 || TRTBE_DTYPE_OK16(yt)) || ldy < n)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_fp8: per-channel scales need an f32 accumulator (m=%d n=%d, y %d, ldy %lld)", m, n, yt, (long long)ldy);
  int32_t st = gemm_fp8_run(ctx, w, x, acc, m, n, k, TRTB_DTYPE_F32, n, 1.f, tactic, scratch);
  return st != TRTB_OK ? st : trtbe_dequant_acc(ctx->stream, acc, true, ws, alpha, xs, y, yt, ldy, m, n);
}

// ----------------------------------------------------------------------------------------------
// tuning

namespace {
struct TuneBufs {
  std::vector<void *> a;
  void *x = nullptr, *y = nullptr;
  ~TuneBufs() {
    for (void *p : a) cudaFree(p);
    if (x) cudaFree(x);
    if (y) cudaFree(y);
  }
};
}  // namespace

/* Median per-call time (µs) of `run(i)` over 3 measurements, each spanning >= min_ms. */
template <typename F>
static int32_t time_it(trtb_engine_ctx *ctx, double min_ms, F run, float *us) {
  int32_t st;
  for (int i = 0; i < 2; i++)
    if ((st = run(i)) != TRTB_OK) return st;
  TRTB_CUDA_TRY(cudaEventRecord(ctx->t0, ctx->stream));
  if ((st = run(2)) != TRTB_OK) return st;
  TRTB_CUDA_TRY(cudaEventRecord(ctx->t1, ctx->stream));
  TRTB_CUDA_TRY(cudaEventSynchronize(ctx->t1));
  double one = trtbe_ms(ctx->t0, ctx->t1);
  if (one <= 0) one = 1e-3;
  int reps = (int)(min_ms / one) + 1;
  reps = std::max(3, std::min(reps, 500));
  float meas[3];
  for (int r = 0; r < 3; r++) {
    TRTB_CUDA_TRY(cudaEventRecord(ctx->t0, ctx->stream));
    for (int i = 0; i < reps; i++)
      if ((st = run(i)) != TRTB_OK) return st;
    TRTB_CUDA_TRY(cudaEventRecord(ctx->t1, ctx->stream));
    TRTB_CUDA_TRY(cudaEventSynchronize(ctx->t1));
    meas[r] = trtbe_ms(ctx->t0, ctx->t1) * 1000.f / reps;
  }
  std::sort(meas, meas + 3);
  *us = meas[1];
  return TRTB_OK;
}


/* Random weight copies (bytes each, filled as 16-bit dtype values in [-scale, scale)), rotated
 * between runs so that repeated runs do not read from L2 (it holds ~50 MB on H100). */
static int32_t tune_weights(trtb_engine_ctx *ctx, TuneBufs &b, size_t bytes, int32_t dtype, float scale, int *copies) {
  *copies = (int)std::min<size_t>(8, std::max<size_t>(1, ((size_t)256 << 20) / std::max<size_t>(bytes, 1)));
  for (int i = 0; i < *copies; i++) {
    void *a = nullptr;
    TRTB_CUDA_TRY(cudaMalloc(&a, bytes));
    b.a.push_back(a);
    int32_t st = trtbe_fill_random(ctx->stream, a, (int64_t)(bytes / 2), dtype, 0x1234u + i, scale);
    if (st != TRTB_OK) return st;
  }
  return TRTB_OK;
}

/* Time cuBLASLt's heuristic candidates for p's shape (x ld k, y ld n) and append them to res;
 * run(e, algo, it) queues one call. Algorithms offered but unable to run are skipped. */
template <typename F>
static int32_t time_lt_candidates(trtb_engine_ctx *ctx, const trtb_engine_tune_params *p, std::vector<trtb_engine_tune_result> &res, F run) {
  const trtbe_gemm_key key = gemm_key(p->m, p->n, p->k, p->ab_dtype, p->y_dtype, p->k, p->n);
  trtbe_gemm_entry *e = nullptr;
  int32_t st = entry_get(ctx, key, &e);
  if (st != TRTB_OK) return st;
  const int want = std::max(1, std::min(p->max_algos > 0 ? p->max_algos : 8, 32));
  cublasLtMatmulHeuristicResult_t hr[32];
  int nh = 0;
  if ((st = heuristic(ctx, e, want, hr, &nh)) != TRTB_OK) return st;
  for (int i = 0; i < nh; i++) {
    if (hr[i].state != CUBLAS_STATUS_SUCCESS || hr[i].workspaceSize > ctx->ws_bytes) continue;
    float us = 0;
    const cublasLtMatmulAlgo_t algo = hr[i].algo;
    st = time_it(ctx, p->min_ms, [&](int it) { return run(e, &algo, it); }, &us);
    if (st == TRTB_ERR_UNSUPPORTED) continue;  // an algorithm the heuristic offered but cannot run
    if (st != TRTB_OK) return st;
    trtb_engine_tune_result r;
    memset(&r, 0, sizeof r);
    r.kind = TRTB_TACTIC_CUBLASLT;
    r.variant = i;
    r.time_us = us;
    r.workspace_kb = (uint32_t)(hr[i].workspaceSize / 1024);
    static_assert(sizeof(cublasLtMatmulAlgo_t) == sizeof r.algo, "cublasLtMatmulAlgo_t is 64 bytes");
    memcpy(r.algo, &algo, sizeof r.algo);
    res.push_back(r);
  }
  return TRTB_OK;
}

/* Time one of our kernels (run(it) queues one call) and append it to res as tactic (kind, variant). */
template <typename F>
static int32_t time_ours(trtb_engine_ctx *ctx, const trtb_engine_tune_params *p, std::vector<trtb_engine_tune_result> &res, int32_t kind,
                         int32_t variant, F run) {
  float us = 0;
  int32_t st = time_it(ctx, p->min_ms, run, &us);
  if (st != TRTB_OK) return st;
  trtb_engine_tune_result r;
  memset(&r, 0, sizeof r);
  r.kind = kind;
  r.variant = variant;
  r.time_us = us;
  res.push_back(r);
  return TRTB_OK;
}

/* Wait for the timings, sort them fastest first and copy out up to max_out. */
static int32_t tune_results(trtb_engine_ctx *ctx, std::vector<trtb_engine_tune_result> &res, trtb_engine_tune_result *out,
                            int32_t max_out, int32_t *n_out) {
  TRTB_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
  std::sort(res.begin(), res.end(), [](const trtb_engine_tune_result &a, const trtb_engine_tune_result &c) { return a.time_us < c.time_us; });
  const int nres = (int)std::min<size_t>(res.size(), (size_t)std::max(0, max_out));
  for (int i = 0; i < nres; i++) out[i] = res[i];
  *n_out = nres;
  return TRTB_OK;
}

static int32_t tune_wo(trtb_engine_ctx *ctx, const trtb_engine_tune_params *p, int bits, trtb_engine_tune_result *out,
                       int32_t max_out, int32_t *n_out);

/* FP8 sites (TRTB_OP_GEMM_FP8): cuBLASLt's e4m3 candidates. The operands are random bytes (a few
 * are NaN patterns, which does not change the tensor cores' speed). */
static int32_t tune_fp8(trtb_engine_ctx *ctx, const trtb_engine_tune_params *p, trtb_engine_tune_result *out, int32_t max_out,
                        int32_t *n_out) {
  const int m = p->m, n = p->n, k = p->k;
  if (m <= 0 || n <= 0 || k <= 0 || k % 16 || !(p->y_dtype == TRTB_DTYPE_F32 || TRTBE_DTYPE_OK16(p->y_dtype)))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "tune: bad FP8 problem m=%d n=%d k=%d -> %d (k a multiple of 16)", m, n, k, p->y_dtype);
  const size_t ys = p->y_dtype == TRTB_DTYPE_F32 ? 4 : 2;
  TuneBufs b;
  int copies = 0;
  int32_t st = tune_weights(ctx, b, (size_t)n * k, TRTB_DTYPE_BF16, 0.05f, &copies);
  if (st != TRTB_OK) return st;
  TRTB_CUDA_TRY(cudaMalloc(&b.x, (size_t)m * k));
  TRTB_CUDA_TRY(cudaMalloc(&b.y, (size_t)m * n * ys));
  if ((st = trtbe_fill_random(ctx->stream, b.x, (int64_t)m * k / 2, TRTB_DTYPE_BF16, 0x9876u, 1.0f)) != TRTB_OK) return st;
  std::vector<trtb_engine_tune_result> res;
  st = time_lt_candidates(ctx, p, res, [&](trtbe_gemm_entry *e, const cublasLtMatmulAlgo_t *algo, int it) {
    return run_lt(ctx, e, algo, b.a[it % copies], b.x, b.y);
  });
  if (st != TRTB_OK) return st;
  // our FP8 GEMV (fp32 accumulation) for decode-sized m
  if (p->allow_gemv && m <= 8) {
    const int rows_opts[3] = {1, 2, 4};
    for (int ri = 0; ri < 3; ri++) {
      const int rows = rows_opts[ri];
      if (!trtbe_gemv_fp8_ok(b.a[0], b.x, m, k, p->y_dtype, rows)) continue;
      st = time_ours(ctx, p, res, TRTB_TACTIC_GEMV, rows,
                     [&](int it) { return trtbe_gemv_fp8(ctx->stream, b.a[it % copies], b.x, b.y, m, n, k, p->y_dtype, n, 1.f, rows); });
      if (st != TRTB_OK) return st;
    }
  }
  return tune_results(ctx, res, out, max_out, n_out);
}

int32_t trtbe_tune(trtb_engine_ctx *ctx, const trtb_engine_tune_params *p, trtb_engine_tune_result *out, int32_t max_out,
                   int32_t *n_out) {
  *n_out = 0;
  const int m = p->m, n = p->n, k = p->k;
  const int wbits = p->struct_size >= offsetof(trtb_engine_tune_params, w_bits) + sizeof(int32_t) ? p->w_bits : 0;
  if (wbits) {
    if (!(wbits == 8 || wbits == 4) || m <= 0 || n <= 0 || k <= 0 || k % 8 || !TRTBE_DTYPE_OK16(p->ab_dtype) ||
        !(p->y_dtype == TRTB_DTYPE_F32 || p->y_dtype == p->ab_dtype))
      return trtb__fail(TRTB_ERR_INVALID_ARG, "tune: bad weight-only problem m=%d n=%d k=%d int%d dtypes %d -> %d", m, n, k, wbits, p->ab_dtype, p->y_dtype);
    return tune_wo(ctx, p, wbits, out, max_out, n_out);
  }
  if (p->ab_dtype == TRTB_DTYPE_F8_E4M3) return tune_fp8(ctx, p, out, max_out, n_out);
  if (m <= 0 || n <= 0 || k <= 0 || !TRTBE_DTYPE_OK16(p->ab_dtype) || !(p->y_dtype == TRTB_DTYPE_F32 || TRTBE_DTYPE_OK16(p->y_dtype)))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "tune: bad problem m=%d n=%d k=%d dtypes %d -> %d", m, n, k, p->ab_dtype, p->y_dtype);
  const size_t es = 2, ys = p->y_dtype == TRTB_DTYPE_F32 ? 4 : 2;
  TuneBufs b;
  int copies = 0;
  int32_t st = tune_weights(ctx, b, (size_t)n * k * es, p->ab_dtype, 0.05f, &copies);
  if (st != TRTB_OK) return st;
  TRTB_CUDA_TRY(cudaMalloc(&b.x, (size_t)m * k * es));
  TRTB_CUDA_TRY(cudaMalloc(&b.y, (size_t)m * n * ys));
  if ((st = trtbe_fill_random(ctx->stream, b.x, (int64_t)m * k, p->ab_dtype, 0x9876u, 1.0f)) != TRTB_OK) return st;

  std::vector<trtb_engine_tune_result> res;
  // cuBLASLt candidates
  st = time_lt_candidates(ctx, p, res, [&](trtbe_gemm_entry *e, const cublasLtMatmulAlgo_t *algo, int it) {
    return run_lt(ctx, e, algo, b.a[it % copies], b.x, b.y);
  });
  if (st != TRTB_OK) return st;
  // our GEMV
  if (p->allow_gemv && m <= 8) {
    const int rows_opts[3] = {1, 2, 4};
    for (int ri = 0; ri < 3; ri++) {
      const int rows = rows_opts[ri];
      if (!trtbe_gemv_ok(b.a[0], b.x, m, k, p->ab_dtype, p->ab_dtype, p->y_dtype, k, rows)) continue;
      st = time_ours(ctx, p, res, TRTB_TACTIC_GEMV, rows, [&](int it) {
        return trtbe_gemv(ctx->stream, b.a[it % copies], b.x, b.y, m, n, k, p->ab_dtype, p->ab_dtype, p->y_dtype, k, n, rows);
      });
      if (st != TRTB_OK) return st;
    }
  }
  return tune_results(ctx, res, out, max_out, n_out);
}

int32_t trtbe_bench_gemm(trtb_engine_ctx *ctx, int32_t m, int32_t n, int32_t k, int32_t iters, double *tflops) {
  trtb_engine_tune_params p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.m = m;
  p.n = n;
  p.k = k;
  p.ab_dtype = TRTB_DTYPE_BF16;
  p.y_dtype = TRTB_DTYPE_BF16;
  p.max_algos = 8;
  p.allow_gemv = 0;
  p.min_ms = iters > 0 ? (double)iters : 20.0;
  trtb_engine_tune_result r[8];
  int32_t nr = 0;
  int32_t st = trtbe_tune(ctx, &p, r, 8, &nr);
  if (st != TRTB_OK) return st;
  if (nr < 1) return trtb__fail(TRTB_ERR_UNSUPPORTED, "bench_gemm: no cuBLASLt algorithm for %d x %d x %d", m, n, k);
  *tflops = 2.0 * m * (double)n * k / (r[0].time_us * 1e-6) / 1e12;
  return TRTB_OK;
}

// ----------------------------------------------------------------------------------------------
// weight-only GEMMs (W8A16 / W4A16): our tensor-core kernel up to 64 rows, else the weights are
// expanded to 16-bit in `deq` and multiplied by cuBLASLt

int32_t trtbe_gemm_wo(trtb_engine_ctx *ctx, const void *w, const float *scale, const void *x, void *y, int32_t m, int32_t n,
                      int32_t k, int32_t bits, int32_t ab, int32_t yt, int64_t ldx, int64_t ldy, int32_t tactic, int32_t xt,
                      void *scratch, void *deq, const void *gs, int32_t group) {
  if (m <= 0 || n <= 0) return TRTB_OK;
  if (k <= 0 || !(bits == 8 || bits == 4) || !TRTBE_DTYPE_OK16(ab) || !(yt == TRTB_DTYPE_F32 || yt == ab) || !(xt == ab || xt == TRTB_DTYPE_F32))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_wo: bad shape or dtypes (m=%d n=%d k=%d, int%d, x %d -> %d)", m, n, k, bits, xt, yt);
  if (ldx < k || ldy < n) return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_wo: ldx %lld < k %d or ldy %lld < n %d", (long long)ldx, k, (long long)ldy, n);
  if (tactic >= ctx->n_tactics) return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_wo: tactic %d is not registered", tactic);
  const trtbe_tactic *t = tactic >= 0 ? &ctx->tactics[tactic] : nullptr;
  const bool exact = xt == TRTB_DTYPE_F32;
  if (exact && yt != TRTB_DTYPE_F32) return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_wo: an f32 input needs an f32 output");
  if (exact && !scratch) return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_wo: f32 input needs a scratch buffer");
  char *hi = (char *)scratch, *lo = hi ? hi + (size_t)m * k * 2 : nullptr;
  int32_t st;
  if (exact && (st = trtbe_split16(ctx->stream, (const float *)x, ldx, hi, lo, m, k, ab)) != TRTB_OK) return st;
  const int rt = t && t->kind == TRTB_TACTIC_WO ? t->variant : 1;
  if (exact && gs) {
    // group-wise scales cannot go onto the f32 sums of one GEMM: our kernel, 64 rows at a time
    const size_t ys = 4;
    for (int32_t m0 = 0; m0 < m; m0 += 64) {
      const int32_t mm = std::min(64, m - m0);
      st = trtbe_wo_gemm(ctx->stream, w, scale, gs, group, hi + (size_t)m0 * k * 2, lo + (size_t)m0 * k * 2,
                         (char *)y + (size_t)m0 * ldy * ys, mm, n, k, bits, ab, yt, k, ldy, mm == m ? rt : 1);
      if (st != TRTB_OK) return st;
    }
    return TRTB_OK;
  }
  if (m <= 64 && !(t && t->kind == TRTB_TACTIC_CUBLASLT)) {
    if (exact) return trtbe_wo_gemm(ctx->stream, w, scale, nullptr, 0, hi, lo, y, m, n, k, bits, ab, yt, k, ldy, rt);
    return trtbe_wo_gemm(ctx->stream, w, scale, gs, group, x, nullptr, y, m, n, k, bits, ab, yt, ldx, ldy, rt);
  }
  if (!deq) return trtb__fail(TRTB_ERR_INVALID_ARG, "gemm_wo: m=%d needs the dequantization scratch buffer", m);
  const trtbe_tactic *lt = t && t->kind == TRTB_TACTIC_CUBLASLT ? t : nullptr;
  const int32_t lid = lt ? tactic : -1;
  if (exact) {
    // q exactly in 16 bits, both halves of x, then the per-channel scale on the f32 sums
    if ((st = trtbe_wo_dequant(ctx->stream, w, scale, nullptr, 0, deq, n, k, bits, ab, 0)) != TRTB_OK) return st;
    if ((st = gemm16(ctx, deq, hi, y, m, n, k, ab, yt, k, ldy, lt, lid, 0.f)) != TRTB_OK) return st;
    if ((st = gemm16(ctx, deq, lo, y, m, n, k, ab, yt, k, ldy, lt, lid, 1.f)) != TRTB_OK) return st;
    return trtbe_scale_cols(ctx->stream, (float *)y, scale, m, n, ldy);
  }
  if ((st = trtbe_wo_dequant(ctx->stream, w, scale, gs, group, deq, n, k, bits, ab, 1)) != TRTB_OK) return st;
  return gemm16(ctx, deq, x, y, m, n, k, ab, yt, ldx, ldy, lt, lid, 0.f);
}

/* trtbe_tune for a weight-only site: our kernel's row-tile variants up to 64 rows, else cuBLASLt's
 * candidates timed together with the expansion of the weights they need. */
static int32_t tune_wo(trtb_engine_ctx *ctx, const trtb_engine_tune_params *p, int bits, trtb_engine_tune_result *out,
                       int32_t max_out, int32_t *n_out) {
  const int m = p->m, n = p->n, k = p->k;
  const size_t np = (size_t)(n + 15) / 16 * 16, kp = (size_t)trtbe_wo_kp(k, bits);
  const size_t ys = p->y_dtype == TRTB_DTYPE_F32 ? 4 : 2;
  TuneBufs b;
  int copies = 0;
  const int group = p->struct_size >= offsetof(trtb_engine_tune_params, w_group) + sizeof(int32_t) ? p->w_group : 0;
  if (group && (trtbe_wo_gshift(group, bits) < 0 || k % group))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "tune: group %d does not suit int%d with k=%d", group, bits, k);
  int32_t st = tune_weights(ctx, b, np * kp * bits / 8, TRTB_DTYPE_BF16, 1.0f, &copies);  // any bytes are valid q
  if (st != TRTB_OK) return st;
  void *scale = nullptr, *deq = nullptr, *gs = nullptr;
  TRTB_CUDA_TRY(cudaMalloc(&scale, np * 4));
  b.a.push_back(scale);
  TRTB_CUDA_TRY(cudaMemsetAsync(scale, 0x3c, np * 4, ctx->stream));
  if (group) {  // group scales of the real size (their values do not change the timing)
    const size_t gbytes = np * (size_t)(k / group) * 2;
    TRTB_CUDA_TRY(cudaMalloc(&gs, gbytes));
    b.a.push_back(gs);
    TRTB_CUDA_TRY(cudaMemsetAsync(gs, 0x3c, gbytes, ctx->stream));
  }
  TRTB_CUDA_TRY(cudaMalloc(&b.x, (size_t)m * k * 2));
  TRTB_CUDA_TRY(cudaMalloc(&b.y, (size_t)m * n * ys));
  if ((st = trtbe_fill_random(ctx->stream, b.x, (int64_t)m * k, p->ab_dtype, 0x9876u, 1.0f)) != TRTB_OK) return st;
  std::vector<trtb_engine_tune_result> res;
  if (m <= 64) {
    for (int v = 1; v <= (m <= 8 ? 2 : 1); v++)
    for (int rt = 1; rt <= trtbe_wo_max_rt(m); rt *= 2) {
      const int variant = rt | (v == 2 ? TRTBE_WO_PREFETCH : 0);
      st = time_ours(ctx, p, res, TRTB_TACTIC_WO, variant, [&](int it) {
        return trtbe_wo_gemm(ctx->stream, b.a[it % copies], (const float *)scale, gs, group, b.x, nullptr, b.y, m, n, k,
                             bits, p->ab_dtype, p->y_dtype, k, n, variant);
      });
      if (st != TRTB_OK) return st;
    }
  } else {
    TRTB_CUDA_TRY(cudaMalloc(&deq, (size_t)n * k * 2));
    b.a.push_back(deq);
    st = time_lt_candidates(ctx, p, res, [&](trtbe_gemm_entry *e, const cublasLtMatmulAlgo_t *algo, int it) {
      int32_t s2 = trtbe_wo_dequant(ctx->stream, b.a[it % copies], (const float *)scale, gs, group, deq, n, k, bits,
                                    p->ab_dtype, 1);
      return s2 != TRTB_OK ? s2 : run_lt(ctx, e, algo, deq, b.x, b.y);
    });
    if (st != TRTB_OK) return st;
  }
  return tune_results(ctx, res, out, max_out, n_out);
}
