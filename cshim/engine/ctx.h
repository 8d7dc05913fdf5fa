/*
 * ctx.h: the engine context and the GEMM layer's interface (gemm.cu, the only cuBLASLt code).
 */
#pragma once

#include <cublasLt.h>

#include "internal.cuh"
#include "kernels/fill.cuh"
#include "kernels/gemm_wo.cuh"
#include "kernels/gemv.cuh"

struct trtbe_tactic {
  int32_t kind;     /* TRTB_TACTIC_* */
  int32_t variant;  /* GEMV rows per warp; WO row tiles per block */
  cublasLtMatmulAlgo_t algo;
};

struct trtbe_gemm_key {
  int32_t m, n, k, ab, y, pad;
  int64_t ldx, ldy;
};

/* Descriptors for one exact GEMM shape, plus which tactics were checked valid for it. */
#define TRTBE_CHECKED 4
struct trtbe_gemm_entry {
  trtbe_gemm_key key;
  int used;
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t A, B, C;
  int heur_state;  /* 0 not asked, 1 ok, -1 none */
  cublasLtMatmulAlgo_t heur;
  int32_t checked_id[TRTBE_CHECKED];
  int8_t checked_ok[TRTBE_CHECKED];
  int n_checked;
};

struct trtb_engine_ctx {
  int32_t device;
  cudaStream_t stream;
  cublasLtHandle_t lt;
  void *ws;
  size_t ws_bytes;
  /* upload staging */
  void *pin[2];
  size_t pin_bytes;
  cudaEvent_t pin_ev[2];
  /* tactics */
  trtbe_tactic *tactics;
  int32_t n_tactics, cap_tactics;
  /* GEMM descriptor cache (open addressing, cleared when full) */
  trtbe_gemm_entry *gemm;
  int32_t gemm_cap, gemm_count;
  cudaEvent_t t0, t1;
  int32_t sm_count;
};

struct trtb_engine_graph {
  int32_t device;
  cudaGraph_t graph;
  cudaGraphExec_t exec;
};

/* y[m,n] = x[m,k] . w[n,k]^T with the given tactic (-1 heuristic); falls back to the heuristic
 * when the tactic does not apply to this exact shape. x is w's dtype, or F32 (exact path: y F32;
 * GEMV for m <= 8, else x split into two 16-bit halves in `scratch` (2·m·k elements) and two GEMMs). */
int32_t trtbe_gemm(trtb_engine_ctx *ctx, const void *w, const void *x, void *y, int32_t m, int32_t n, int32_t k,
                   int32_t ab, int32_t yt, int64_t ldx, int64_t ldy, int32_t tactic, int32_t xt, void *scratch);
/* Weight-only GEMM (TRTB_OP_GEMM_WO; gs / group: group-wise AWQ scales, see trtb_engine.h). */
int32_t trtbe_gemm_wo(trtb_engine_ctx *ctx, const void *w, const float *scale, const void *x, void *y, int32_t m, int32_t n,
                      int32_t k, int32_t bits, int32_t ab, int32_t yt, int64_t ldx, int64_t ldy, int32_t tactic, int32_t xt,
                      void *scratch, void *deq, const void *gs, int32_t group);
/* FP8 GEMM (TRTB_OP_GEMM_FP8): y = alpha · x[M,K] . w[N,K]^T, both e4m3, through cuBLASLt
 * (ws: · ws[n] · xs[m], through the f32 accumulator acc [M,N]). */
int32_t trtbe_gemm_fp8(trtb_engine_ctx *ctx, const void *w, const void *x, void *y, int32_t m, int32_t n, int32_t k, int32_t yt,
                       int64_t ldy, float alpha, int32_t tactic, void *scratch, float *acc, const float *xs, const float *ws);
/* SmoothQuant GEMM (TRTB_OP_GEMM_I8): acc = x[M,K] . w[N,K]^T in int32, y = acc · a · ws[n] (· xs[m]). */
int32_t trtbe_gemm_i8(trtb_engine_ctx *ctx, const void *w, const void *x, int32_t *acc, void *y, int32_t m, int32_t n, int32_t k,
                      int32_t yt, int64_t ldy, float a, const float *ws, int32_t tactic, const float *xs);
int32_t trtbe_gemm_ctx_init(trtb_engine_ctx *ctx);
void trtbe_gemm_ctx_free(trtb_engine_ctx *ctx);
int32_t trtbe_tune(trtb_engine_ctx *ctx, const trtb_engine_tune_params *p, trtb_engine_tune_result *out, int32_t max_out,
                   int32_t *n_out);
int32_t trtbe_bench_gemm(trtb_engine_ctx *ctx, int32_t m, int32_t n, int32_t k, int32_t iters, double *tflops);
