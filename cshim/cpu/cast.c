/*
 * cast.c: trtb_cast, the public CPU entry points that are not transpose, and the ABI
 * version / error accessors of libtrtb.
 *
 * Napkin maths: a core converts f32 -> bf16 at a few GB/s in these vectorized loops, so 1 GiB takes
 * a few hundred ms on one thread; buffers above TRTB__CAST_GRAIN elements per thread are split.
 */
#include <string.h>

#include "internal.h"
#include "numeric.h"
#include "parallel.h"

/* Minimum elements per thread: 256 Ki elements is 0.5-1 MiB of source, well above thread start
 * cost. Chunks start on a multiple of 64 elements, keeping each thread on its own cache lines. */
#define TRTB__CAST_GRAIN (256u * 1024u)
#define TRTB__CAST_ALIGN 64u

/* ---- loops (unaligned access through memcpy, which compiles to plain loads) ------------------ */

static void cast_f32_f16(const unsigned char *restrict s, unsigned char *restrict d, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, s + 4 * i, 4);
    uint16_t h = trtb__f32_to_f16(u);
    memcpy(d + 2 * i, &h, 2);
  }
}

static void cast_f32_bf16(const unsigned char *restrict s, unsigned char *restrict d, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, s + 4 * i, 4);
    uint16_t h = trtb__f32_to_bf16(u);
    memcpy(d + 2 * i, &h, 2);
  }
}

static void cast_f16_f32(const unsigned char *restrict s, unsigned char *restrict d, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    uint16_t h;
    memcpy(&h, s + 2 * i, 2);
    uint32_t u = trtb__f16_to_f32(h);
    memcpy(d + 4 * i, &u, 4);
  }
}

static void cast_bf16_f32(const unsigned char *restrict s, unsigned char *restrict d, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    uint16_t h;
    memcpy(&h, s + 2 * i, 2);
    uint32_t u = trtb__bf16_to_f32(h);
    memcpy(d + 4 * i, &u, 4);
  }
}

static void cast_f16_bf16(const unsigned char *restrict s, unsigned char *restrict d, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    uint16_t h;
    memcpy(&h, s + 2 * i, 2);
    uint16_t o = trtb__f32_to_bf16(trtb__f16_to_f32(h));
    memcpy(d + 2 * i, &o, 2);
  }
}

static void cast_bf16_f16(const unsigned char *restrict s, unsigned char *restrict d, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    uint16_t h;
    memcpy(&h, s + 2 * i, 2);
    uint16_t o = trtb__f32_to_f16(trtb__bf16_to_f32(h));
    memcpy(d + 2 * i, &o, 2);
  }
}

typedef struct {
  trtb__cast_kind kind;
  const unsigned char *src;
  unsigned char *dst;
  uint32_t ss, ds; /* element sizes */
} cast_job;

static void cast_range(void *p, uint64_t b, uint64_t e) {
  const cast_job *j = (const cast_job *)p;
  const unsigned char *s = j->src + b * j->ss;
  unsigned char *d = j->dst + b * j->ds;
  const uint64_t n = e - b;
  switch (j->kind) {
    case TRTB__CAST_NOOP: break;
    case TRTB__CAST_COPY: memcpy(d, s, (size_t)(n * j->ss)); break;
    case TRTB__CAST_F32_F16: cast_f32_f16(s, d, n); break;
    case TRTB__CAST_F32_BF16: cast_f32_bf16(s, d, n); break;
    case TRTB__CAST_F16_F32: cast_f16_f32(s, d, n); break;
    case TRTB__CAST_BF16_F32: cast_bf16_f32(s, d, n); break;
    case TRTB__CAST_F16_BF16: cast_f16_bf16(s, d, n); break;
    case TRTB__CAST_BF16_F16: cast_bf16_f16(s, d, n); break;
  }
}

/* ---- public ---------------------------------------------------------------------------------- */

TRTB_API uint32_t trtb_abi_version(void) { return TRTB_ABI_VERSION; }
TRTB_API const char *trtb_status_str(int32_t status) { return trtb__status_str(status); }
TRTB_API int32_t trtb_last_error(char *buf, uint64_t buf_len) { return trtb__last_error_copy(buf, buf_len); }
TRTB_API uint32_t trtb_dtype_size(int32_t dtype) { return trtb__dtype_size(dtype); }

TRTB_API int32_t trtb_cast(const void *src, uint64_t src_bytes, int32_t src_dtype, void *dst, uint64_t dst_bytes,
                           int32_t dst_dtype) {
  uint64_t n;
  trtb__cast_kind kind;
  int32_t st = trtb__check_cast("trtb_cast", src, src_bytes, src_dtype, dst, dst_bytes, dst_dtype, &n, &kind);
  if (st != TRTB_OK) return st;
  if (kind == TRTB__CAST_NOOP) return TRTB_OK;
  cast_job job = {kind, (const unsigned char *)src, (unsigned char *)dst, trtb__dtype_size(src_dtype),
                  trtb__dtype_size(dst_dtype)};
  /* A copy is memcpy-bound already; give it a larger grain so small copies stay on one thread. */
  uint64_t grain = kind == TRTB__CAST_COPY ? 4u * TRTB__CAST_GRAIN : TRTB__CAST_GRAIN;
  trtb__parallel_for(n, grain, TRTB__CAST_ALIGN, cast_range, &job);
  return TRTB_OK;
}
