/*
 * cast.c: trtb_cast, trtb_find_nonfinite (the NaN/Inf scan run over every tensor a conversion
 * writes), the public CPU entry points that are not transpose, and the ABI version / error
 * accessors of libtrtb.
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

/* ---- NaN / Inf scan -------------------------------------------------------------------------- */

/* A float is non-finite when its exponent bits are all ones; with the sign masked off that is
 * "magnitude bits >= the all-ones exponent". Blocks of SCAN_BLOCK elements reduce with a max (the
 * loop vectorizes); only a block that holds a hit is walked again for the exact index. */
#define TRTB__SCAN_BLOCK 4096u
#define TRTB__SCAN_GRAIN (1024u * 1024u)

typedef struct {
  const unsigned char *src;
  int32_t dtype;
  uint64_t first; /* smallest bad index found so far (UINT64_MAX: none); updated atomically */
} scan_job;

static int bad16(uint16_t h, uint16_t mag, uint16_t lim) { return (uint16_t)(h & mag) >= lim; }

static uint64_t scan16(const unsigned char *s, uint64_t b, uint64_t e, uint16_t mag, uint16_t lim) {
  for (uint64_t i = b; i < e; i += TRTB__SCAN_BLOCK) {
    const uint64_t end = i + TRTB__SCAN_BLOCK < e ? i + TRTB__SCAN_BLOCK : e;
    uint16_t m = 0;
    for (uint64_t k = i; k < end; k++) {
      uint16_t h;
      memcpy(&h, s + 2 * k, 2);
      h &= mag;
      m = h > m ? h : m;
    }
    if (m >= lim)
      for (uint64_t k = i; k < end; k++) {
        uint16_t h;
        memcpy(&h, s + 2 * k, 2);
        if (bad16(h, mag, lim)) return k;
      }
  }
  return UINT64_MAX;
}

static uint64_t scan32(const unsigned char *s, uint64_t b, uint64_t e) {
  for (uint64_t i = b; i < e; i += TRTB__SCAN_BLOCK) {
    const uint64_t end = i + TRTB__SCAN_BLOCK < e ? i + TRTB__SCAN_BLOCK : e;
    uint32_t m = 0;
    for (uint64_t k = i; k < end; k++) {
      uint32_t u;
      memcpy(&u, s + 4 * k, 4);
      u &= 0x7fffffffu;
      m = u > m ? u : m;
    }
    if (m >= 0x7f800000u)
      for (uint64_t k = i; k < end; k++) {
        uint32_t u;
        memcpy(&u, s + 4 * k, 4);
        if ((u & 0x7fffffffu) >= 0x7f800000u) return k;
      }
  }
  return UINT64_MAX;
}

static uint64_t scan_other(const unsigned char *s, int32_t dt, uint64_t b, uint64_t e) {
  for (uint64_t k = b; k < e; k++) {
    if (dt == TRTB_DTYPE_F64) {
      uint64_t u;
      memcpy(&u, s + 8 * k, 8);
      if ((u & 0x7fffffffffffffffull) >= 0x7ff0000000000000ull) return k;
    } else if (dt == TRTB_DTYPE_F8_E4M3) {
      if ((s[k] & 0x7f) == 0x7f) return k; /* e4m3fn: no inf, NaN is S.1111.111 */
    } else if ((s[k] & 0x7c) == 0x7c) {
      return k; /* e5m2: exponent all ones */
    }
  }
  return UINT64_MAX;
}

static void scan_range(void *p, uint64_t b, uint64_t e) {
  scan_job *j = (scan_job *)p;
  uint64_t hit;
  switch (j->dtype) {
    case TRTB_DTYPE_F32: hit = scan32(j->src, b, e); break;
    case TRTB_DTYPE_F16: hit = scan16(j->src, b, e, 0x7fffu, 0x7c00u); break;
    case TRTB_DTYPE_BF16: hit = scan16(j->src, b, e, 0x7fffu, 0x7f80u); break;
    default: hit = scan_other(j->src, j->dtype, b, e); break;
  }
  if (hit == UINT64_MAX) return;
  uint64_t cur = __atomic_load_n(&j->first, __ATOMIC_RELAXED);
  while (hit < cur && !__atomic_compare_exchange_n(&j->first, &cur, hit, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

TRTB_API int32_t trtb_find_nonfinite(const void *src, uint64_t src_bytes, int32_t dtype, uint64_t *first) {
  if (first == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "trtb_find_nonfinite: first is NULL");
  *first = UINT64_MAX;
  const uint32_t es = trtb__dtype_size(dtype);
  if (es == 0) return trtb__fail(TRTB_ERR_DTYPE, "trtb_find_nonfinite: %d is not a dtype", (int)dtype);
  if (src_bytes % es != 0)
    return trtb__fail(TRTB_ERR_SIZE, "trtb_find_nonfinite: %llu bytes is not a whole number of %s elements",
                      (unsigned long long)src_bytes, trtb__dtype_name(dtype));
  if (src_bytes == 0) return TRTB_OK;
  if (src == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "trtb_find_nonfinite: src is NULL");
  if (!(dtype == TRTB_DTYPE_F32 || dtype == TRTB_DTYPE_F16 || dtype == TRTB_DTYPE_BF16 || dtype == TRTB_DTYPE_F64 ||
        dtype == TRTB_DTYPE_F8_E4M3 || dtype == TRTB_DTYPE_F8_E5M2))
    return TRTB_OK; /* integers and bool are always finite */
  scan_job job = {(const unsigned char *)src, dtype, UINT64_MAX};
  trtb__parallel_for(src_bytes / es, TRTB__SCAN_GRAIN, TRTB__SCAN_BLOCK, scan_range, &job);
  *first = job.first;
  return TRTB_OK;
}
