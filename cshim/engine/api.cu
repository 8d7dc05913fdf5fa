/*
 * api.cu: the public trtb_engine_* entry points: devices, contexts, memory, staged uploads, the
 * op-program interpreter, CUDA graphs, tactics, timers and reference rates.
 *
 * Every CUDA runtime call is checked (TRTB_CUDA_TRY) and every entry point that touches a device
 * makes the context's device current first. Nothing here exits, aborts or prints.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "ctx.h"
#include "kernels/activation.cuh"
#include "kernels/attention_decode.cuh"
#include "kernels/attention_prefill.cuh"
#include "kernels/embed.cuh"
#include "kernels/moe.cuh"
#include "kernels/norm.cuh"
#include "kernels/fp8.cuh"
#include "kernels/int8.cuh"
#include "kernels/rowq.cuh"
#include "kernels/rope.cuh"
#include "kernels/rows.cuh"
#include "kernels/sample.cuh"

// src/ffi/engine-symbols.ts reads and writes these layouts by offset.
static_assert(sizeof(trtb_engine_device_info) == 304 && offsetof(trtb_engine_device_info, name) == 48,
              "trtb_engine_device_info layout changed: update DEVICE_INFO");
static_assert(sizeof(trtb_engine_tune_params) == 48 && offsetof(trtb_engine_tune_params, min_ms) == 32 &&
                  offsetof(trtb_engine_tune_params, w_bits) == 40,
              "trtb_engine_tune_params layout changed: update TUNE_PARAMS");
static_assert(sizeof(trtb_engine_tune_result) == 80 && offsetof(trtb_engine_tune_result, algo) == 16,
              "trtb_engine_tune_result layout changed: update TUNE_RESULT");
static_assert(sizeof(trtb_engine_sample_params) == 32 && offsetof(trtb_engine_sample_params, seed) == 16,
              "trtb_engine_sample_params layout changed: update SAMPLE_PARAMS");

bool trtbe_pdl_enabled(void) {
  static int cached = -1;
  if (cached < 0) {
    const char *e = getenv("TRTB_ENGINE_PDL");
    cached = !(e && e[0] == '0');
  }
  return cached != 0;
}

int32_t trtbe_kernels_init(void) {
  int32_t st = trtbe_norm_init();
  if (st != TRTB_OK) return st;
  return trtbe_attn_prefill_init();
}

#define CTX_CHECK(fn)                                                                     \
  do {                                                                                    \
    if (ctx == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: context is NULL", fn); \
    TRTB_CUDA_TRY(cudaSetDevice(ctx->device));                                            \
  } while (0)

static inline void *dptr(uint64_t v) { return (void *)(uintptr_t)v; }

extern "C" {

TRTB_API uint32_t trtb_engine_abi_version(void) { return TRTB_ABI_VERSION; }
TRTB_API uint32_t trtb_engine_interface_version(void) { return TRTB_ENGINE_ABI_VERSION; }
TRTB_API const char *trtb_engine_status_str(int32_t status) { return trtb__status_str(status); }
TRTB_API int32_t trtb_engine_last_error(char *buf, uint64_t buf_len) { return trtb__last_error_copy(buf, buf_len); }

TRTB_API int32_t trtb_engine_device_count(int32_t *out) { return trtb__cuda_device_count("trtb_engine_device_count", out); }

TRTB_API int32_t trtb_engine_device_info_get(int32_t device, trtb_engine_device_info *info) {
  const char *fn = "trtb_engine_device_info_get";
  if (info == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: info is NULL", fn);
  if (info->struct_size < sizeof(trtb_engine_device_info))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: struct_size %u is smaller than %u", fn, info->struct_size,
                      (unsigned)sizeof(trtb_engine_device_info));
  int32_t st = trtb__cuda_use_device(fn, device);
  if (st != TRTB_OK) return st;
  cudaDeviceProp p;
  TRTB_CUDA_TRY(cudaGetDeviceProperties(&p, device));
  size_t free_b = 0, total_b = 0;
  TRTB_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
  info->major = p.major;
  info->minor = p.minor;
  info->multiprocessors = p.multiProcessorCount;
  info->total_memory = (uint64_t)p.totalGlobalMem;
  info->free_memory = (uint64_t)free_b;
  info->l2_bytes = (uint64_t)p.l2CacheSize;
  info->smem_optin = (int32_t)p.sharedMemPerBlockOptin;
  info->cublaslt_version = (int32_t)cublasLtGetVersion();
  trtb__cuda_copy_name(info->name, sizeof info->name, p.name, sizeof p.name);
  return TRTB_OK;
}

TRTB_API int32_t trtb_engine_ctx_destroy(trtb_engine_ctx *ctx);

TRTB_API int32_t trtb_engine_ctx_create(int32_t device, uint64_t workspace_bytes, trtb_engine_ctx **out) {
  const char *fn = "trtb_engine_ctx_create";
  if (out == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  int32_t st = trtb__cuda_use_device(fn, device);
  if (st != TRTB_OK) return st;
  trtb_engine_ctx *ctx = (trtb_engine_ctx *)calloc(1, sizeof *ctx);
  if (!ctx) return trtb__fail(TRTB_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  ctx->device = device;
  cudaError_t err;
#define CREATE_TRY(call)                                          \
  if ((err = (call)) != cudaSuccess) {                            \
    st = trtb__cuda_fail(err, #call, __FILE__, __LINE__);         \
    goto fail;                                                    \
  }
  CREATE_TRY(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
  CREATE_TRY(cudaEventCreate(&ctx->t0));
  CREATE_TRY(cudaEventCreate(&ctx->t1));
  CREATE_TRY(cudaEventCreateWithFlags(&ctx->pin_ev[0], cudaEventDisableTiming));
  CREATE_TRY(cudaEventCreateWithFlags(&ctx->pin_ev[1], cudaEventDisableTiming));
  ctx->ws_bytes = workspace_bytes ? (size_t)workspace_bytes : ((size_t)32 << 20);
  CREATE_TRY(cudaMalloc(&ctx->ws, ctx->ws_bytes));
  CREATE_TRY(cudaDeviceGetAttribute(&ctx->sm_count, cudaDevAttrMultiProcessorCount, device));
#undef CREATE_TRY
  if ((st = trtbe_gemm_ctx_init(ctx)) != TRTB_OK) goto fail;
  if ((st = trtbe_kernels_init()) != TRTB_OK) goto fail;
  *out = ctx;
  return TRTB_OK;
fail: {
  // keep the first error's text: destroy may overwrite it
  char msg[1024];
  trtb__last_error_copy(msg, sizeof msg);
  trtb_engine_ctx_destroy(ctx);
  return trtb__fail(st, "%s", msg);
}
}

TRTB_API int32_t trtb_engine_ctx_destroy(trtb_engine_ctx *ctx) {
  if (ctx == NULL) return TRTB_OK;
  int32_t st = TRTB_OK;
  cudaError_t err = cudaSetDevice(ctx->device);
  if (err == cudaSuccess && ctx->stream) err = cudaStreamSynchronize(ctx->stream);
  if (err != cudaSuccess) st = trtb__cuda_fail(err, "trtb_engine_ctx_destroy: waiting for the stream", __FILE__, __LINE__);
  trtbe_gemm_ctx_free(ctx);
  if (ctx->ws) cudaFree(ctx->ws);
  for (int i = 0; i < 2; i++) {
    if (ctx->pin[i]) cudaFreeHost(ctx->pin[i]);
    if (ctx->pin_ev[i]) cudaEventDestroy(ctx->pin_ev[i]);
  }
  if (ctx->t0) cudaEventDestroy(ctx->t0);
  if (ctx->t1) cudaEventDestroy(ctx->t1);
  if (ctx->stream) cudaStreamDestroy(ctx->stream);
  free(ctx->tactics);
  free(ctx);
  (void)cudaGetLastError();
  return st;
}

TRTB_API int32_t trtb_engine_sync(trtb_engine_ctx *ctx) {
  CTX_CHECK("trtb_engine_sync");
  TRTB_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
  return TRTB_OK;
}

TRTB_API int32_t trtb_engine_mem_info(trtb_engine_ctx *ctx, uint64_t *free_bytes, uint64_t *total_bytes) {
  CTX_CHECK("trtb_engine_mem_info");
  if (!free_bytes || !total_bytes) return trtb__fail(TRTB_ERR_INVALID_ARG, "trtb_engine_mem_info: NULL output");
  size_t f = 0, t = 0;
  TRTB_CUDA_TRY(cudaMemGetInfo(&f, &t));
  *free_bytes = f;
  *total_bytes = t;
  return TRTB_OK;
}

TRTB_API int32_t trtb_engine_malloc(trtb_engine_ctx *ctx, uint64_t bytes, uint64_t *out) {
  const char *fn = "trtb_engine_malloc";
  CTX_CHECK(fn);
  if (out == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: out is NULL", fn);
  *out = 0;
  if (bytes == 0) return TRTB_OK;
  void *p = NULL;
  cudaError_t err = cudaMalloc(&p, (size_t)bytes);
  if (err != cudaSuccess) {
    int32_t st = trtb__cuda_fail(err, "cudaMalloc", __FILE__, __LINE__);
    if (st == TRTB_ERR_CUDA_OUT_OF_MEMORY) {
      size_t f = 0, t = 0;
      if (cudaMemGetInfo(&f, &t) != cudaSuccess) (void)cudaGetLastError();
      trtb__fail(st, "%s: cannot allocate %llu bytes on device %d (%llu of %llu bytes free)", fn, (unsigned long long)bytes,
                 (int)ctx->device, (unsigned long long)f, (unsigned long long)t);
    }
    return st;
  }
  *out = (uint64_t)(uintptr_t)p;
  return TRTB_OK;
}

TRTB_API int32_t trtb_engine_free(trtb_engine_ctx *ctx, uint64_t ptr) {
  CTX_CHECK("trtb_engine_free");
  if (ptr == 0) return TRTB_OK;
  TRTB_CUDA_TRY(cudaFree(dptr(ptr)));
  return TRTB_OK;
}

TRTB_API int32_t trtb_engine_host_alloc(uint64_t bytes, void **out) {
  if (out == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "trtb_engine_host_alloc: out is NULL");
  *out = NULL;
  if (bytes == 0) return TRTB_OK;
  TRTB_CUDA_TRY(cudaHostAlloc(out, (size_t)bytes, cudaHostAllocPortable));
  memset(*out, 0, (size_t)bytes);
  return TRTB_OK;
}

TRTB_API int32_t trtb_engine_host_free(void *ptr) {
  if (ptr == NULL) return TRTB_OK;
  TRTB_CUDA_TRY(cudaFreeHost(ptr));
  return TRTB_OK;
}

}  // extern "C"

// ----------------------------------------------------------------------------------------------
// staged upload: parallel memcpy into a pinned buffer, async DMA from it, two buffers in flight

#define PIN_BYTES ((size_t)64 << 20)

static void parallel_copy(void *dst, const void *src, size_t n) {
  const size_t per = (size_t)8 << 20;
  unsigned hw = std::thread::hardware_concurrency();
  size_t nthreads = std::min<size_t>(std::min<size_t>(hw ? hw : 1, 8), (n + per - 1) / per);
  if (nthreads <= 1) {
    memcpy(dst, src, n);
    return;
  }
  std::vector<std::thread> th;
  const size_t part = (n + nthreads - 1) / nthreads;
  size_t started = 0;
  try {
    for (size_t i = 0; i < nthreads; i++) {
      const size_t a = i * part, b = std::min(n, a + part);
      if (a >= b) break;
      th.emplace_back([=] { memcpy((char *)dst + a, (const char *)src + a, b - a); });
      started = b;
    }
  } catch (...) {
    // could not start a thread: copy the rest here
  }
  if (started < n) memcpy((char *)dst + started, (const char *)src + started, n - started);
  for (auto &t : th) t.join();
}

extern "C" {

TRTB_API int32_t trtb_engine_upload(trtb_engine_ctx *ctx, uint64_t dst, const void *src, uint64_t bytes) {
  const char *fn = "trtb_engine_upload";
  CTX_CHECK(fn);
  if (bytes == 0) return TRTB_OK;
  if (dst == 0 || src == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: NULL pointer with %llu bytes", fn, (unsigned long long)bytes);
  if (!ctx->pin[0]) {
    for (int i = 0; i < 2; i++) TRTB_CUDA_TRY(cudaHostAlloc(&ctx->pin[i], PIN_BYTES, cudaHostAllocPortable));
    ctx->pin_bytes = PIN_BYTES;
  }
  uint64_t off = 0;
  int buf = 0;
  bool used[2] = {false, false};
  while (off < bytes) {
    const size_t n = (size_t)std::min<uint64_t>(ctx->pin_bytes, bytes - off);
    if (used[buf]) TRTB_CUDA_TRY(cudaEventSynchronize(ctx->pin_ev[buf]));
    parallel_copy(ctx->pin[buf], (const char *)src + off, n);
    TRTB_CUDA_TRY(cudaMemcpyAsync(dptr(dst + off), ctx->pin[buf], n, cudaMemcpyHostToDevice, ctx->stream));
    TRTB_CUDA_TRY(cudaEventRecord(ctx->pin_ev[buf], ctx->stream));
    used[buf] = true;
    off += n;
    buf ^= 1;
  }
  TRTB_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
  return TRTB_OK;
}

TRTB_API int32_t trtb_engine_download(trtb_engine_ctx *ctx, void *dst, uint64_t src, uint64_t bytes) {
  const char *fn = "trtb_engine_download";
  CTX_CHECK(fn);
  if (bytes == 0) return TRTB_OK;
  if (src == 0 || dst == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: NULL pointer with %llu bytes", fn, (unsigned long long)bytes);
  TRTB_CUDA_TRY(cudaMemcpyAsync(dst, dptr(src), (size_t)bytes, cudaMemcpyDeviceToHost, ctx->stream));
  TRTB_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
  return TRTB_OK;
}

}  // extern "C"

// ----------------------------------------------------------------------------------------------
// op interpreter

struct OpSpec {
  const char *name;
  uint32_t nargs;
};

static const OpSpec kOps[] = {
    {"?", 0},           {"EMBED", 9},      {"ADD_NORM", 12},     {"GEMM", 13},  {"QKV_ROPE", 21},
    {"ATTN_DECODE", 19}, {"ATTN_PREFILL", 19}, {"GATED_ACT", 10},  {"GATHER_ROWS", 5}, {"SCATTER_ADD", 6},
    {"SOFTCAP", 4},     {"SAMPLE", 7},     {"MEMCPY", 4},        {"MEMSET", 3}, {"MOE_ROUTE", 9},
    {"GEMM_WO", 18},   {"ACT_FP8", 7},  {"GEMM_FP8", 14},
    {"ACT_I8", 7},   {"GEMM_I8", 13}, {"MUL_COLS", 6},  {"ACT_ROWQ", 11},
};
#define N_OPS ((uint32_t)(sizeof kOps / sizeof kOps[0]))

static int32_t run_op(trtb_engine_ctx *ctx, uint32_t op, const uint64_t *a) {
  auto P = [&](int i) { return dptr(a[i]); };
  auto I = [&](int i) { return (int64_t)a[i]; };
  auto F = [&](int i) {
    double d;
    memcpy(&d, &a[i], sizeof d);
    return d;
  };
  cudaStream_t s = ctx->stream;
  switch (op) {
    case TRTB_OP_EMBED: {
      EmbedArgs x{(const int32_t *)P(0), P(1), (int32_t)I(2), I(3), I(4), (int32_t)I(5), (float)F(6), (float *)P(7), I(8)};
      return trtbe_embed(s, x);
    }
    case TRTB_OP_ADD_NORM: {
      AddNormArgs x{(float *)P(0), (const float *)P(1), I(2), (const float *)P(3), (const float *)P(4), (const float *)P(5),
                    (float)F(6), P(7), (int32_t)I(8), (int32_t)I(9), I(10), (float)F(11)};
      return trtbe_add_norm(s, x);
    }
    case TRTB_OP_GEMM:
      return trtbe_gemm(ctx, P(0), P(1), P(2), (int32_t)I(3), (int32_t)I(4), (int32_t)I(5), (int32_t)I(6), (int32_t)I(7), I(8),
                        I(9), (int32_t)I(10), (int32_t)I(11), P(12));
    case TRTB_OP_GEMM_WO:
      return trtbe_gemm_wo(ctx, P(0), (const float *)P(1), P(2), P(3), (int32_t)I(4), (int32_t)I(5), (int32_t)I(6), (int32_t)I(7),
                           (int32_t)I(8), (int32_t)I(9), I(10), I(11), (int32_t)I(12), (int32_t)I(13), P(14), P(15), P(16), (int32_t)I(17));
    case TRTB_OP_QKV_ROPE: {
      QkvRopeArgs x{(const float *)P(0), I(1), (const float *)P(2), (const float *)P(3), (const float *)P(4), (float)F(5),
                    (const int32_t *)P(6), (const int32_t *)P(7), P(8), (int32_t)I(9), (int32_t)I(10), (int32_t)I(11),
                    (int32_t)I(12), (int32_t)I(13), (int32_t)I(14), (const float *)P(15), (float *)P(16), I(17),
                    (const int32_t *)P(18), (float)F(19), (float)F(20)};
      return trtbe_qkv_rope(s, x);
    }
    case TRTB_OP_ATTN_DECODE: {
      AttnDecodeArgs x{(const float *)P(0), P(1), (int32_t)I(2), (const int32_t *)P(3), (int32_t)I(4), (const int32_t *)P(5),
                       (int32_t)I(6), (int32_t)I(7), (int32_t)I(8), (int32_t)I(9), (float)F(10), (float)F(11), (int32_t)I(12),
                       (int32_t)I(13), (float *)P(14), P(15), (int32_t)I(16), (int32_t)I(17), (float)F(18)};
      return trtbe_attn_decode(s, x);
    }
    case TRTB_OP_ATTN_PREFILL: {
      AttnPrefillArgs x{(const float *)P(0), P(1), (int32_t)I(2), (const int32_t *)P(3), (int32_t)I(4), (const int32_t *)P(5),
                        (int32_t)I(6), (const int32_t *)P(7), (const int32_t *)P(8), (int32_t)I(9), (int32_t)I(10),
                        (int32_t)I(11), (int32_t)I(12), (float)F(13), (float)F(14), (int32_t)I(15), P(16), (int32_t)I(17), (float)F(18)};
      return trtbe_attn_prefill(s, x);
    }
    case TRTB_OP_GATED_ACT: {
      GatedActArgs x{P(0), (int32_t)I(1), (const float *)P(2), P(3), (int32_t)I(4), I(5), I(6), (int32_t)I(7), (float)F(8), (const float *)P(9)};
      return trtbe_gated_act(s, x);
    }
    case TRTB_OP_GATHER_ROWS: return trtbe_gather_rows(s, P(0), P(1), (const int32_t *)P(2), I(3), I(4));
    case TRTB_OP_SCATTER_ADD:
      return trtbe_scatter_add(s, (const float *)P(0), (float *)P(1), (const int32_t *)P(2), (const float *)P(3), I(4), I(5));
    case TRTB_OP_SOFTCAP: return trtbe_softcap(s, P(0), (int32_t)I(1), I(2), (float)F(3));
    case TRTB_OP_SAMPLE: {
      SampleArgs x{P(0), (int32_t)I(1), I(2), (int32_t)I(3), (const trtb_engine_sample_params *)P(4), (int32_t *)P(5), (int32_t)I(6)};
      return trtbe_sample(s, x);
    }
    case TRTB_OP_MEMCPY: {
      const int64_t kind = I(3);
      if (a[2] == 0) return TRTB_OK;
      if (!a[0] || !a[1]) return trtb__fail(TRTB_ERR_INVALID_ARG, "memcpy: NULL pointer");
      const cudaMemcpyKind k = kind == 1 ? cudaMemcpyHostToDevice : kind == 2 ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice;
      if (kind < 1 || kind > 3) return trtb__fail(TRTB_ERR_INVALID_ARG, "memcpy: kind %lld (1 h2d, 2 d2h, 3 d2d)", (long long)kind);
      TRTB_CUDA_TRY(cudaMemcpyAsync(P(0), P(1), (size_t)a[2], k, s));
      return TRTB_OK;
    }
    case TRTB_OP_MEMSET:
      if (a[2] == 0) return TRTB_OK;
      TRTB_CUDA_TRY(cudaMemsetAsync(P(0), (int)(a[1] & 0xff), (size_t)a[2], s));
      return TRTB_OK;
    case TRTB_OP_MOE_ROUTE: {
      MoeRouteArgs x{P(0), (int32_t)I(1), (const float *)P(2), (int32_t)I(3), (int32_t)I(4), (int32_t)I(5), (int32_t *)P(6),
                     (float *)P(7), I(8)};
      return trtbe_moe_route(s, x);
    }
    case TRTB_OP_ACT_FP8: return trtbe_quant_fp8(s, P(0), (int32_t)I(1), I(2), P(3), I(4), I(5), (float)F(6));
    case TRTB_OP_GEMM_FP8:
      return trtbe_gemm_fp8(ctx, P(0), P(1), P(2), (int32_t)I(3), (int32_t)I(4), (int32_t)I(5), (int32_t)I(6), I(7), (float)F(8),
                            (int32_t)I(9), P(10), (float *)P(11), (const float *)P(12), (const float *)P(13));
    case TRTB_OP_ACT_I8: return trtbe_quant_int8(s, (const float *)P(0), I(1), (const float *)P(2), P(3), I(4), I(5), (float)F(6));
    case TRTB_OP_GEMM_I8:
      return trtbe_gemm_i8(ctx, P(0), P(1), (int32_t *)P(2), P(3), (int32_t)I(4), (int32_t)I(5), (int32_t)I(6), (int32_t)I(7), I(8),
                           (float)F(9), (const float *)P(10), (int32_t)I(11), (const float *)P(12));
    case TRTB_OP_MUL_COLS: return trtbe_mul_cols(s, P(0), (int32_t)I(1), I(2), (const float *)P(3), I(4), I(5));
    case TRTB_OP_ACT_ROWQ:
      return trtbe_quant_rows(s, P(0), (int32_t)I(1), I(2), (const float *)P(3), P(4), (int32_t)I(5), I(6), I(7), (float *)P(8), (float)F(9),
                              (float)F(10));
    default: return trtb__fail(TRTB_ERR_INVALID_ARG, "unknown opcode %u", op);
  }
}

static int32_t exec_program(trtb_engine_ctx *ctx, const uint64_t *ops, uint64_t n_words) {
  uint64_t i = 0;
  int idx = 0;
  while (i < n_words) {
    const uint32_t op = (uint32_t)(ops[i] & 0xffffffffu);
    const uint32_t n = (uint32_t)(ops[i] >> 32);
    if (op == 0 || op >= N_OPS) return trtb__fail(TRTB_ERR_INVALID_ARG, "exec: op #%d: unknown opcode %u", idx, op);
    if (n != kOps[op].nargs)
      return trtb__fail(TRTB_ERR_INVALID_ARG, "exec: op #%d (%s) has %u arguments, expected %u", idx, kOps[op].name, n, kOps[op].nargs);
    if (i + 1 + n > n_words) return trtb__fail(TRTB_ERR_INVALID_ARG, "exec: op #%d (%s) runs past the program end", idx, kOps[op].name);
    int32_t st = run_op(ctx, op, ops + i + 1);
    if (st != TRTB_OK) {
      char msg[900];
      trtb__last_error_copy(msg, sizeof msg);
      return trtb__fail(st, "op #%d (%s): %s", idx, kOps[op].name, msg);
    }
    i += 1 + n;
    idx++;
  }
  return TRTB_OK;
}

extern "C" {

TRTB_API int32_t trtb_engine_exec(trtb_engine_ctx *ctx, const uint64_t *ops, uint64_t n_words) {
  CTX_CHECK("trtb_engine_exec");
  if (ops == NULL && n_words) return trtb__fail(TRTB_ERR_INVALID_ARG, "trtb_engine_exec: ops is NULL");
  return exec_program(ctx, ops, n_words);
}

TRTB_API int32_t trtb_engine_graph_capture(trtb_engine_ctx *ctx, const uint64_t *ops, uint64_t n_words, trtb_engine_graph **out) {
  const char *fn = "trtb_engine_graph_capture";
  CTX_CHECK(fn);
  if (out == NULL || (ops == NULL && n_words)) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: NULL argument", fn);
  *out = NULL;
  TRTB_CUDA_TRY(cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal));
  int32_t st = exec_program(ctx, ops, n_words);
  cudaGraph_t g = NULL;
  cudaError_t err = cudaStreamEndCapture(ctx->stream, &g);
  if (st != TRTB_OK) {
    if (g) cudaGraphDestroy(g);
    (void)cudaGetLastError();
    return st;
  }
  if (err != cudaSuccess) return trtb__cuda_fail(err, "cudaStreamEndCapture", __FILE__, __LINE__);
  cudaGraphExec_t ex = NULL;
  err = cudaGraphInstantiate(&ex, g, 0);
  if (err != cudaSuccess) {
    cudaGraphDestroy(g);
    return trtb__cuda_fail(err, "cudaGraphInstantiate", __FILE__, __LINE__);
  }
  trtb_engine_graph *gr = (trtb_engine_graph *)calloc(1, sizeof *gr);
  if (!gr) {
    cudaGraphExecDestroy(ex);
    cudaGraphDestroy(g);
    return trtb__fail(TRTB_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  }
  gr->device = ctx->device;
  gr->graph = g;
  gr->exec = ex;
  *out = gr;
  return TRTB_OK;
}

TRTB_API int32_t trtb_engine_graph_launch(trtb_engine_ctx *ctx, trtb_engine_graph *graph) {
  CTX_CHECK("trtb_engine_graph_launch");
  if (graph == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "trtb_engine_graph_launch: graph is NULL");
  if (graph->device != ctx->device) return trtb__fail(TRTB_ERR_INVALID_ARG, "trtb_engine_graph_launch: graph belongs to device %d", graph->device);
  TRTB_CUDA_TRY(cudaGraphLaunch(graph->exec, ctx->stream));
  return TRTB_OK;
}

TRTB_API int32_t trtb_engine_graph_destroy(trtb_engine_graph *graph) {
  if (graph == NULL) return TRTB_OK;
  int32_t st = TRTB_OK;
  cudaError_t err = cudaSetDevice(graph->device);
  if (err == cudaSuccess) err = cudaGraphExecDestroy(graph->exec);
  if (err == cudaSuccess) err = cudaGraphDestroy(graph->graph);
  if (err != cudaSuccess) st = trtb__cuda_fail(err, "trtb_engine_graph_destroy", __FILE__, __LINE__);
  free(graph);
  return st;
}

TRTB_API int32_t trtb_engine_tactic_add(trtb_engine_ctx *ctx, int32_t kind, int32_t variant, const uint64_t *algo, int32_t *out_id) {
  const char *fn = "trtb_engine_tactic_add";
  if (ctx == NULL || out_id == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: NULL argument", fn);
  if (kind != TRTB_TACTIC_HEURISTIC && kind != TRTB_TACTIC_CUBLASLT && kind != TRTB_TACTIC_GEMV && kind != TRTB_TACTIC_WO)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: unknown tactic kind %d", fn, kind);
  if (kind == TRTB_TACTIC_CUBLASLT && algo == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: cuBLASLt tactic without algorithm bytes", fn);
  if (kind == TRTB_TACTIC_GEMV && variant != 1 && variant != 2 && variant != 4)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: GEMV variant %d (1, 2 or 4 rows per warp)", fn, variant);
  if (kind == TRTB_TACTIC_WO && !((variant & ~TRTBE_WO_PREFETCH) == 1 || (variant & ~TRTBE_WO_PREFETCH) == 2 || (variant & ~TRTBE_WO_PREFETCH) == 4))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: weight-only variant %d (1, 2 or 4 row tiles per block, + 8 to prefetch activations)", fn, variant);
  if (ctx->n_tactics == ctx->cap_tactics) {
    const int32_t cap = ctx->cap_tactics ? ctx->cap_tactics * 2 : 64;
    trtbe_tactic *t = (trtbe_tactic *)realloc(ctx->tactics, (size_t)cap * sizeof *t);
    if (!t) return trtb__fail(TRTB_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    ctx->tactics = t;
    ctx->cap_tactics = cap;
  }
  trtbe_tactic *t = &ctx->tactics[ctx->n_tactics];
  memset(t, 0, sizeof *t);
  t->kind = kind;
  t->variant = variant;
  if (kind == TRTB_TACTIC_CUBLASLT) memcpy(&t->algo, algo, sizeof t->algo);
  *out_id = ctx->n_tactics++;
  return TRTB_OK;
}

TRTB_API int32_t trtb_engine_tune(trtb_engine_ctx *ctx, const trtb_engine_tune_params *params, trtb_engine_tune_result *results,
                                  int32_t max_results, int32_t *n_results) {
  const char *fn = "trtb_engine_tune";
  CTX_CHECK(fn);
  if (!params || !n_results || (!results && max_results > 0)) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: NULL argument", fn);
  if (params->struct_size < sizeof(trtb_engine_tune_params))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: struct_size %u is smaller than %u", fn, params->struct_size,
                      (unsigned)sizeof(trtb_engine_tune_params));
  return trtbe_tune(ctx, params, results, max_results, n_results);
}

TRTB_API int32_t trtb_engine_timer_start(trtb_engine_ctx *ctx) {
  CTX_CHECK("trtb_engine_timer_start");
  TRTB_CUDA_TRY(cudaEventRecord(ctx->t0, ctx->stream));
  return TRTB_OK;
}

TRTB_API int32_t trtb_engine_timer_stop(trtb_engine_ctx *ctx, double *ms) {
  CTX_CHECK("trtb_engine_timer_stop");
  if (!ms) return trtb__fail(TRTB_ERR_INVALID_ARG, "trtb_engine_timer_stop: ms is NULL");
  TRTB_CUDA_TRY(cudaEventRecord(ctx->t1, ctx->stream));
  TRTB_CUDA_TRY(cudaEventSynchronize(ctx->t1));
  float f = 0;
  TRTB_CUDA_TRY(cudaEventElapsedTime(&f, ctx->t0, ctx->t1));
  *ms = f;
  return TRTB_OK;
}

TRTB_API int32_t trtb_engine_bench_copy(trtb_engine_ctx *ctx, uint64_t bytes, int32_t iters, double *gbps) {
  const char *fn = "trtb_engine_bench_copy";
  CTX_CHECK(fn);
  if (!gbps || bytes == 0) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: bad arguments", fn);
  if (iters < 1) iters = 20;
  void *a = NULL, *b = NULL;
  TRTB_CUDA_TRY(cudaMalloc(&a, (size_t)bytes));
  cudaError_t err = cudaMalloc(&b, (size_t)bytes);
  if (err != cudaSuccess) {
    cudaFree(a);
    return trtb__cuda_fail(err, "cudaMalloc", __FILE__, __LINE__);
  }
  int32_t st = trtbe_fill_random(ctx->stream, a, (int64_t)(bytes / 2), TRTB_DTYPE_BF16, 7, 1.f);
  std::vector<float> t;
  for (int r = 0; st == TRTB_OK && r < 5; r++) {
    err = cudaEventRecord(ctx->t0, ctx->stream);
    for (int i = 0; err == cudaSuccess && i < iters; i++) err = cudaMemcpyAsync(b, a, (size_t)bytes, cudaMemcpyDeviceToDevice, ctx->stream);
    if (err == cudaSuccess) err = cudaEventRecord(ctx->t1, ctx->stream);
    if (err == cudaSuccess) err = cudaEventSynchronize(ctx->t1);
    if (err != cudaSuccess) st = trtb__cuda_fail(err, "device-to-device copy", __FILE__, __LINE__);
    else if (r > 0) t.push_back(trtbe_ms(ctx->t0, ctx->t1));  // first round is the warm-up
  }
  cudaFree(a);
  cudaFree(b);
  if (st != TRTB_OK) return st;
  std::sort(t.begin(), t.end());
  const double ms = t[t.size() / 2];
  *gbps = 2.0 * (double)bytes * iters / (ms * 1e-3) / 1e9;
  return TRTB_OK;
}

TRTB_API int32_t trtb_engine_bench_gemm(trtb_engine_ctx *ctx, int32_t m, int32_t n, int32_t k, int32_t iters, double *tflops) {
  CTX_CHECK("trtb_engine_bench_gemm");
  if (!tflops || m <= 0 || n <= 0 || k <= 0) return trtb__fail(TRTB_ERR_INVALID_ARG, "trtb_engine_bench_gemm: bad arguments");
  return trtbe_bench_gemm(ctx, m, n, k, iters, tflops);
}

}  // extern "C"
