/*
 * trtb_engine.h: the C ABI of libtrtb_engine.so, the CUDA backend that builds and runs engines
 * (cuBLASLt GEMMs plus our own kernels). Same conventions as trtb.h:
 *
 *   - Prefix trtb_engine_. Every fallible call returns int32_t: TRTB_OK (0) or a negative
 *     TRTB_ERR_* status from trtb.h. The detail text is in a thread-local slot of this library,
 *     copied out by trtb_engine_last_error(). Success leaves it alone.
 *   - Never exits, aborts or prints; never calls back into the caller. Threads it starts (the
 *     parallel host copy of an upload) finish before the call returns.
 *   - No struct passes by value. Params and result structs go by pointer and start with
 *     uint32_t struct_size (set it to the size you know; fields are only ever appended).
 *   - Device memory is a uint64_t device address (from trtb_engine_malloc). Host buffers are a
 *     pointer plus a uint64_t byte length.
 *
 * Work model. A context (trtb_engine_ctx) owns one device, one non-blocking stream, a cuBLASLt
 * handle with its workspace, the pinned staging buffers of uploads and a table of GEMM tactics.
 * Work is described as an *op program*: an array of uint64_t words (layout below), queued with
 * trtb_engine_exec() or captured once into a CUDA graph (trtb_engine_graph_capture) and replayed
 * (trtb_engine_graph_launch). One FFI call runs a whole forward pass.
 *
 * Environment (read once per process):
 *   TRTB_ENGINE_PDL=0     launch kernels without programmatic dependent launch (Hopper overlap of
 *                         a kernel's start with the previous kernel's tail; default on)
 * (The first GPU-verified variants of the tuned kernels, once behind TRTB_ENGINE_LEGACY=1, are
 * compared with the current ones by the harness in cshim/dev/, which the library does not build.)
 *
 * Op program encoding: a sequence of records; record = header word + n argument words.
 *   header = opcode | (n << 32)
 * Arguments are uint64_t: device addresses, integers (two's complement int64 where signed) and
 * floats (IEEE binary64 bit patterns). The argument list of each opcode is documented with the
 * enum below and mirrored in src/ffi/engine.ts (the one TypeScript file that writes programs).
 */
#ifndef TRTB_ENGINE_H
#define TRTB_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "trtb.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this header's interface; trtb_engine_interface_version() reports it and
 * src/ffi/engine.ts refuses a library whose number differs. Bump it on any change to a signature,
 * a struct layout or an op's argument list. (trtb_engine_abi_version() reports trtb.h's
 * TRTB_ABI_VERSION, the number the shared loader in src/ffi/lib.ts checks for every library.) */
#define TRTB_ENGINE_ABI_VERSION 5u

typedef struct trtb_engine_ctx trtb_engine_ctx;     /* opaque */
typedef struct trtb_engine_graph trtb_engine_graph; /* opaque */

/* ---- opcodes (append-only) -------------------------------------------------------------------
 * dtype arguments are trtb_dtype values (F32 = 1, F16 = 2, BF16 = 3). "f64" = a double's bits.
 * Row-major everywhere; T = number of tokens of the op.
 * kv_dtype is F16 / BF16 / F32, or I8 / F8_E4M3 for a quantized cache (1-byte elements): then
 * kv_scale(f64, > 0) is the layer's kv_cache_scaling_factor s, k and v are stored as
 * I8: clamp(RNE(x / s), -128, 127), F8_E4M3: e4m3(clamp(x / s, ±448)) (the rules of trtb_quantize)
 * and read back as stored · s; kv_scale is 1 for the other dtypes.
 */
enum {
  /* args: ids(i32[T]), table, table_dtype, vocab_rows, vocab_start, H, scale(f64), out(f32[T,H]), T
   * out[t] = table[ids[t] - vocab_start] * scale; ids outside the table give zeros. */
  TRTB_OP_EMBED = 1,
  /* args: res(f32[T,H]), delta(f32, 0 = none), delta_ld, delta_bias(f32[H] or 0),
   *       delta_norm(f32[H] or 0), norm_w(f32[H] or 0), eps(f64), out(0 = none), out_dtype, H, T, out_scale(f64)
   * d = delta + bias; if delta_norm: d = rmsnorm(d) * delta_norm; res += d;
   * out = rmsnorm(res) * norm_w (cast to out_dtype; F8_E4M3: e4m3(value / out_scale), RNE, saturated:
   * an FP8 GEMM's input, as TRTB_OP_ACT_FP8 makes it). */
  TRTB_OP_ADD_NORM = 2,
  /* args: w, x, y, M, N, K, w_dtype, y_dtype, ldx, ldy, tactic_id (-1: heuristic), x_dtype, scratch
   * y[M,N] = x[M,K] . w[N,K]^T, fp32 accumulation. x_dtype is w_dtype, or F32 (the exact path: y F32;
   * our GEMV for M <= 8, else x split into two 16-bit halves in scratch (2·M·K elements) and two GEMMs,
   * so the activations are used to ~16 bits instead of 8). */
  TRTB_OP_GEMM = 3,
  /* args: qkv(f32[T,ld]), ld, bias(f32 or 0), q_norm(f32[D] or 0), k_norm(f32[D] or 0), eps(f64),
   *       pos(i32[T]), slot(i32[T]), kv_layer, kv_dtype, tokens_per_block, nH, nKV, D, rot_dim,
   *       inv_freq(f32[rot/2], or [2][rot/2] with rope_sel), q_out(f32[T,nH,D]), T, rope_sel(i32[T] or null), mscale,
   *       kv_scale(f64)
   * bias, per-head RMSNorm of q/k, rotate-half RoPE (cos, sin × mscale; token t reads inv_freq row
   * rope_sel[t]: LongRoPE's short / long table), q to q_out, k and v into the paged cache. */
  TRTB_OP_QKV_ROPE = 4,
  /* args: q(f32[B,nH,D]), kv_layer, kv_dtype, block_table(i32[B,max_blocks]), max_blocks,
   *       ctx_len(i32[B]), nH, nKV, D, tokens_per_block, scale(f64), softcap(f64, 0 = none),
   *       window(0 = none), nsplit, workspace, out, out_dtype, B, kv_scale(f64)
   * One new token per sequence against its whole cached context, split-K: the last block of each
   * (sequence, KV head) merges the splits. workspace (nsplit > 1): 65536 u32 counters, zero before
   * the first use (the kernel leaves them zero), then B·nH·nsplit·(D + 2) f32 partials. */
  TRTB_OP_ATTN_DECODE = 5,
  /* args: q(f32[T,nH,D]), kv_layer, kv_dtype, block_table, max_blocks, tiles(i32[n_tiles,2]),
   *       n_tiles, cu_q(i32[nseq+1]), pos0(i32[nseq]), nH, nKV, D, tokens_per_block, scale(f64),
   *       softcap(f64), window, out, out_dtype, kv_scale(f64)
   * Causal attention of packed query tokens against the paged cache. A tile is (sequence index,
   * first query row) and covers 64 query rows. 16-bit KV runs on tensor cores; f32 KV (exact
   * numerics) and I8 / F8_E4M3 KV on fp32 SIMT. */
  TRTB_OP_ATTN_PREFILL = 6,
  /* args: in([T,2I]), in_dtype, bias(f32[2I] or 0), out([T,I]), out_dtype, I, T, act (0 silu,
   *       1 gelu_tanh), out_scale(f64), mul(f32[I] or 0). out = in[:, :I] * act(in[:, I:]) (* mul[i], in f32,
   *       before the output is rounded: AWQ's prequant of the next GEMM) (F8_E4M3 out: as ADD_NORM). */
  TRTB_OP_GATED_ACT = 7,
  /* args: src, dst, idx(i32[R]), R, row_bytes   dst[r] = src[idx[r]] (rows of row_bytes bytes) */
  TRTB_OP_GATHER_ROWS = 8,
  /* args: y(f32[R,H]), out(f32[T,H]), idx(i32[R]), w(f32[R]), R, H   out[idx[r]] += w[r] * y[r] */
  TRTB_OP_SCATTER_ADD = 9,
  /* args: x([n]), x_dtype (F32 or F16), n, cap(f64)   x = tanh(x / cap) * cap (f32 math) */
  TRTB_OP_SOFTCAP = 10,
  /* args: logits([R,ld]), logits_dtype (F32 or F16), ld, V, params(trtb_engine_sample_params[R]),
   *       out_ids(i32[R]), R
   * greedy (temperature <= 0 or top_k == 1) or temperature / top-k / top-p sampling; F16 logits
   * are widened to f32 as they are read. */
  TRTB_OP_SAMPLE = 11,
  /* args: dst, src, bytes, kind (1 h2d, 2 d2h, 3 d2d). Host memory must be pinned
   * (trtb_engine_host_alloc) for the program to be capturable. */
  TRTB_OP_MEMCPY = 12,
  /* args: dst, value (low 8 bits), bytes */
  TRTB_OP_MEMSET = 13,
  /* args: x([T,H]), x_dtype, router(f32[E,H]), E, H, top_k, ids_out(i32[T,k]), w_out(f32[T,k]), T
   * softmax over E experts, top-k (ties to the lower index), renormalised weights. */
  TRTB_OP_MOE_ROUTE = 14,
  /* args: w(tiled q), scale(f32[N]), x, y, M, N, K, bits (8, 4), ab (activation dtype F16/BF16),
   *       y_dtype (F32 or ab), ldx, ldy, tactic_id (-1: heuristic), x_dtype (ab or F32), scratch,
   *       deq, gscale (ab [ceil(N/16), K/group, 8, 2], or 0), group (0, or a multiple of the k tile:
   *       64 / 128 for int4)
   * Weight-only GEMM: y[M,N] = (x[M,K] . q[N,K]^T) * scale[N], q int8/int4 in the tiled layout of
   * cshim/engine/kernels/gemm_wo.cu (N padded to 16, K to 32 / 64 values). M <= 64 runs our
   * tensor-core kernel (any tactic but a cuBLASLt one); otherwise (or with a cuBLASLt tactic) the weights
   * are expanded into deq (a_dtype [N, K], 2·N·K bytes) and cuBLASLt multiplies. x_dtype F32 is the
   * exact path (y F32; x split into two 16-bit halves in scratch, 4·M·K bytes).
   * Group-wise (AWQ, group > 0; int4 only): scale is unused and
   *   y[m,n] = sum_g gscale[n, g] * sum_{k in g} q[n,k] * x[m,k]
   * (each group's sum kept in f32, then scaled). gscale is tiled as [row tile][group][8][2] (rows g
   * and g + 8 of a tile side by side). Beyond 64 rows the expansion multiplies q by gscale; the exact
   * path runs our kernel 64 rows at a time. AWQ's prequant_scaling_factor is for the producer of x
   * to apply (MUL_COLS, GATED_ACT's mul, a norm weight). */
  TRTB_OP_GEMM_WO = 15,
  /* args: x([M,ldx]), x_dtype (F32/F16/BF16), ldx, out(e4m3 [M,K]), M, K, scale(f64)
   * out = e4m3(x / scale), round to nearest even, saturated to ±448 (FP8 activation quantization). */
  TRTB_OP_ACT_FP8 = 16,
  /* args: w(e4m3 [N,K]), x(e4m3 [M,K], ld K), y, M, N, K, y_dtype (F32/BF16/F16), ldy, alpha(f64), tactic_id (-1: heuristic),
   *       scratch (0, or 2·(N+M)·K bytes: the exact path), acc (f32 [M,N] or 0), xs (f32[M] or 0), ws (f32[N] or 0)
   * FP8 GEMM through cuBLASLt: y[M,N] = alpha · (x . w^T) (alpha = the product of the activation and
   * weight scales) on FP8 tensor cores; with scratch, both widened to bf16 (exactly) and multiplied
   * with full fp32 accumulation. With ws (per-channel weight scales, FP8_PER_CHANNEL_PER_TOKEN) the
   * product lands in acc and y = f32(f32(acc · f32(alpha · ws[n])) · xs[m]) (xs: the per-token input
   * scales of TRTB_OP_ACT_ROWQ; 0: none). */
  TRTB_OP_GEMM_FP8 = 17,
  /* args: x(f32 [M,ldx]), ldx, pre(f32[K] or 0), out(i8 [M,K]), M, K, scale(f64)
   * SmoothQuant activation: out = clamp(RNE(f32(f32(x · pre) / scale)), −128, 127). */
  TRTB_OP_ACT_I8 = 18,
  /* args: w(i8 [N,K]), x(i8 [M,K], ld K), acc(i32 [M,N] scratch), y, M, N, K, y_dtype, ldy, a(f64), ws(f32[N]), tactic_id,
   *       xs(f32[M] or 0)
   * SmoothQuant GEMM: acc = x . w^T (int32, cuBLASLt), y = f32(acc · f32(a · ws[n])) (· xs[m]: the
   * per-token input scales of TRTB_OP_ACT_ROWQ). */
  TRTB_OP_GEMM_I8 = 19,
  /* args: x, dtype (F32/F16/BF16), ld, v(f32[cols]), rows, cols
   * x[r, c] *= v[c] in place (AWQ's prequant on the attention output). */
  TRTB_OP_MUL_COLS = 20,
  /* args: x([M,ldx]), x_dtype (F32/F16/BF16), ldx, div(f32[K] or 0), out([M,K]), out_dtype (I8 / F8_E4M3), M, K,
   *       xs(f32[M] out), lo(f64), hi(f64)
   * Per-token dynamic quantization (one scale per row m, written to xs[m]):
   *   I8 (SmoothQuant per-token):  v = x / div[k]; a = max|v|; q = clamp(RNE(f32(v · f32(127 / a))), −128, 127),
   *                                xs = f32(a / 127); a zero row gives q = 0, xs = 0
   *   F8_E4M3 (FP8 rowwise):       v = clamp(x, lo, hi) (when lo < hi); a = max|v|;
   *                                s = max(f32(a / 448), f32(1 / (448·512))); q = e4m3(f32(v / s)), xs = s */
  TRTB_OP_ACT_ROWQ = 21
};

/* Kinds of GEMM tactic (trtb_engine_tactic_add, trtb_engine_tune_result.kind). */
enum {
  TRTB_TACTIC_HEURISTIC = 0, /* cuBLASLt's first heuristic answer for the exact shape */
  TRTB_TACTIC_CUBLASLT = 1,  /* a saved cublasLtMatmulAlgo_t (64 bytes) */
  TRTB_TACTIC_GEMV = 2,      /* our GEMV kernel for M <= 8; variant = rows per warp (1, 2, 4) */
  TRTB_TACTIC_WO = 3         /* our weight-only kernel for M <= 64; variant = row tiles per block (1, 2, 4),
                                + 8: activations fetched a stage ahead (M <= 8) */
};

/* Per-row sampling parameters for TRTB_OP_SAMPLE (device memory, 32 bytes each). */
typedef struct trtb_engine_sample_params {
  float temperature; /* <= 0: greedy */
  int32_t top_k;     /* 0: off; 1: greedy */
  float top_p;       /* >= 1 or <= 0: off */
  int32_t reserved;
  uint64_t seed;
  uint64_t step;     /* mixed into the random stream: one draw per (seed, step, row) */
} trtb_engine_sample_params;

/* Filled by trtb_engine_device_info. */
typedef struct trtb_engine_device_info {
  uint32_t struct_size;
  int32_t major, minor;         /* compute capability */
  int32_t multiprocessors;
  uint64_t total_memory;        /* bytes */
  uint64_t free_memory;         /* bytes free now */
  uint64_t l2_bytes;
  int32_t smem_optin;           /* max dynamic shared memory per block after opt-in */
  int32_t cublaslt_version;     /* cublasLtGetVersion() */
  char name[256];
} trtb_engine_device_info;

/* In: one GEMM problem to time (trtb_engine_tune). */
typedef struct trtb_engine_tune_params {
  uint32_t struct_size;
  int32_t m, n, k;              /* y[m,n] = x[m,k] . w[n,k]^T */
  int32_t ab_dtype, y_dtype;    /* F16/BF16 inputs (F8_E4M3: an FP8 site, TRTB_OP_GEMM_FP8); F32/F16/BF16 output */
  int32_t max_algos;            /* cuBLASLt heuristic candidates to time (<= 32) */
  int32_t allow_gemv;           /* also time our GEMV variants when m <= 8 */
  double min_ms;                /* each measurement spans at least this much GPU time */
  int32_t w_bits;               /* 0: 16-bit weights; 8 / 4: a weight-only site (TRTB_OP_GEMM_WO): our
                                   kernel for m <= 64, else cuBLASLt after expanding the weights */
  int32_t w_group;              /* weight-only: 0 per channel, else the group size (AWQ, int4) */
} trtb_engine_tune_params;

/* Out: one timed candidate. */
typedef struct trtb_engine_tune_result {
  int32_t kind;                 /* TRTB_TACTIC_* */
  int32_t variant;              /* GEMV rows per warp; cuBLASLt: the heuristic rank */
  float time_us;                /* median time per GEMM */
  uint32_t workspace_kb;
  uint64_t algo[8];             /* cublasLtMatmulAlgo_t bytes (kind CUBLASLT) */
} trtb_engine_tune_result;

/* ---- library ----------------------------------------------------------------------------------- */

/* TRTB_ABI_VERSION of trtb.h as this library was built (checked by the shared loader). */
TRTB_API uint32_t trtb_engine_abi_version(void);
/* TRTB_ENGINE_ABI_VERSION as this library was built. */
TRTB_API uint32_t trtb_engine_interface_version(void);
TRTB_API const char *trtb_engine_status_str(int32_t status);
TRTB_API int32_t trtb_engine_last_error(char *buf, uint64_t buf_len);

/* Number of visible devices (TRTB_OK with 0 when none; TRTB_ERR_CUDA_UNAVAILABLE without driver). */
TRTB_API int32_t trtb_engine_device_count(int32_t *out);
TRTB_API int32_t trtb_engine_device_info_get(int32_t device, trtb_engine_device_info *info);

/* ---- context ----------------------------------------------------------------------------------- */

/* Create a context on device with a cuBLASLt workspace of workspace_bytes (0: 32 MiB). */
TRTB_API int32_t trtb_engine_ctx_create(int32_t device, uint64_t workspace_bytes, trtb_engine_ctx **out);
/* Wait for pending work and free everything the context owns. NULL is a no-op. */
TRTB_API int32_t trtb_engine_ctx_destroy(trtb_engine_ctx *ctx);
TRTB_API int32_t trtb_engine_sync(trtb_engine_ctx *ctx);
TRTB_API int32_t trtb_engine_mem_info(trtb_engine_ctx *ctx, uint64_t *free_bytes, uint64_t *total_bytes);

/* Device memory (256-byte aligned). bytes == 0 gives 0. */
TRTB_API int32_t trtb_engine_malloc(trtb_engine_ctx *ctx, uint64_t bytes, uint64_t *out);
TRTB_API int32_t trtb_engine_free(trtb_engine_ctx *ctx, uint64_t ptr);
/* Pinned host memory (for per-step inputs and outputs of captured programs). */
TRTB_API int32_t trtb_engine_host_alloc(uint64_t bytes, void **out);
TRTB_API int32_t trtb_engine_host_free(void *ptr);

/* Copy bytes from host memory of any kind (a mapped file included) to the device, through the
 * context's pinned staging buffers with a parallel host copy; returns when the data is on the
 * device. */
TRTB_API int32_t trtb_engine_upload(trtb_engine_ctx *ctx, uint64_t dst, const void *src, uint64_t bytes);
/* Copy device memory to host memory; returns when done. */
TRTB_API int32_t trtb_engine_download(trtb_engine_ctx *ctx, void *dst, uint64_t src, uint64_t bytes);

/* ---- programs ---------------------------------------------------------------------------------- */

/* Queue an op program on the context's stream. On error the last error names the op index. */
TRTB_API int32_t trtb_engine_exec(trtb_engine_ctx *ctx, const uint64_t *ops, uint64_t n_words);
/* Capture an op program into a CUDA graph (instantiated, ready to launch). */
TRTB_API int32_t trtb_engine_graph_capture(trtb_engine_ctx *ctx, const uint64_t *ops, uint64_t n_words,
                                           trtb_engine_graph **out);
TRTB_API int32_t trtb_engine_graph_launch(trtb_engine_ctx *ctx, trtb_engine_graph *graph);
/* NULL is a no-op. */
TRTB_API int32_t trtb_engine_graph_destroy(trtb_engine_graph *graph);

/* Register a GEMM tactic; *out_id is what TRTB_OP_GEMM's tactic_id takes. algo: 64 bytes for kind
 * CUBLASLT, else may be NULL. */
TRTB_API int32_t trtb_engine_tactic_add(trtb_engine_ctx *ctx, int32_t kind, int32_t variant, const uint64_t *algo,
                                        int32_t *out_id);

/* Time the candidates for one GEMM shape on random data; results sorted fastest first. */
TRTB_API int32_t trtb_engine_tune(trtb_engine_ctx *ctx, const trtb_engine_tune_params *params,
                                  trtb_engine_tune_result *results, int32_t max_results, int32_t *n_results);

/* ---- timing and reference rates ---------------------------------------------------------------- */

/* Record a start event on the stream / record an end event, wait, and give the elapsed ms. */
TRTB_API int32_t trtb_engine_timer_start(trtb_engine_ctx *ctx);
TRTB_API int32_t trtb_engine_timer_stop(trtb_engine_ctx *ctx, double *ms);
/* Device-to-device copy bandwidth over a buffer of bytes (GB/s counting bytes read + written). */
TRTB_API int32_t trtb_engine_bench_copy(trtb_engine_ctx *ctx, uint64_t bytes, int32_t iters, double *gbps);
/* cuBLASLt bf16 GEMM rate for m x n x k on random data, best of the heuristic's top 8 (TFLOP/s);
 * each timing spans at least min_ms of GPU time (0: 20 ms). */
TRTB_API int32_t trtb_engine_bench_gemm(trtb_engine_ctx *ctx, int32_t m, int32_t n, int32_t k, int32_t min_ms,
                                        double *tflops);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TRTB_ENGINE_H */
