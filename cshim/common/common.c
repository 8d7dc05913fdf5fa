/*
 * common.c: last error, status strings, dtype table and argument checks. Compiled into each of
 * the three libraries (hidden symbols), so each library has its own thread-local error slot.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* ---- last error ------------------------------------------------------------------------------ */

/* Long enough for a CUDA error name and string plus the call site; longer text is truncated. */
#define TRTB__ERR_CAP 1024

static _Thread_local char g_err[TRTB__ERR_CAP];
static _Thread_local int32_t g_err_len;

int32_t trtb__fail(int32_t status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(g_err, sizeof g_err, fmt, ap);
  va_end(ap);
  if (n < 0) {
    g_err[0] = '\0';
    n = 0;
  }
  g_err_len = n < TRTB__ERR_CAP ? n : TRTB__ERR_CAP - 1;
  return status;
}

int32_t trtb__last_error_copy(char *buf, uint64_t buf_len) {
  if (buf != NULL && buf_len > 0) {
    uint64_t n = (uint64_t)g_err_len < buf_len - 1 ? (uint64_t)g_err_len : buf_len - 1;
    memcpy(buf, g_err, (size_t)n);
    buf[n] = '\0';
  }
  return g_err_len;
}

const char *trtb__status_str(int32_t status) {
  switch (status) {
    case TRTB_OK: return "TRTB_OK: success";
    case TRTB_ERR_INVALID_ARG: return "TRTB_ERR_INVALID_ARG: invalid argument";
    case TRTB_ERR_DTYPE: return "TRTB_ERR_DTYPE: unknown dtype or unsupported conversion";
    case TRTB_ERR_SIZE: return "TRTB_ERR_SIZE: byte lengths do not match the shape or dtype";
    case TRTB_ERR_OUT_OF_MEMORY: return "TRTB_ERR_OUT_OF_MEMORY: host allocation failed";
    case TRTB_ERR_INTERNAL: return "TRTB_ERR_INTERNAL: internal error in the native shim";
    case TRTB_ERR_UNSUPPORTED: return "TRTB_ERR_UNSUPPORTED: not supported by this build";
    case TRTB_ERR_CUDA_UNAVAILABLE: return "TRTB_ERR_CUDA_UNAVAILABLE: no usable CUDA driver";
    case TRTB_ERR_CUDA_NO_DEVICE: return "TRTB_ERR_CUDA_NO_DEVICE: no CUDA device";
    case TRTB_ERR_CUDA_OUT_OF_MEMORY: return "TRTB_ERR_CUDA_OUT_OF_MEMORY: device allocation failed";
    case TRTB_ERR_CUDA: return "TRTB_ERR_CUDA: CUDA error";
    default: return "unknown status";
  }
}

/* ---- dtypes ---------------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  uint32_t size;
} trtb__dtype_info;

/* Indexed by trtb_dtype; entry 0 is the invalid value. Append only, like the enum. */
static const trtb__dtype_info k_dtypes[] = {
    {"?", 0},       {"F32", 4},  {"F16", 2},  {"BF16", 2}, {"F64", 8},  {"I8", 1},
    {"U8", 1},      {"I16", 2},  {"U16", 2},  {"I32", 4},  {"U32", 4},  {"I64", 8},
    {"U64", 8},     {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};
#define TRTB__N_DTYPES ((int32_t)(sizeof k_dtypes / sizeof k_dtypes[0]))

uint32_t trtb__dtype_size(int32_t dtype) {
  return dtype > 0 && dtype < TRTB__N_DTYPES ? k_dtypes[dtype].size : 0;
}

const char *trtb__dtype_name(int32_t dtype) {
  return dtype > 0 && dtype < TRTB__N_DTYPES ? k_dtypes[dtype].name : "?";
}

/* ---- argument checks ------------------------------------------------------------------------- */

/* Do [a, a + an) and [b, b + bn) share a byte? Empty ranges overlap nothing. */
static int ranges_overlap(const void *a, uint64_t an, const void *b, uint64_t bn) {
  if (an == 0 || bn == 0) return 0;
  uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b;
  return pa < pb ? pb - pa < an : pa - pb < bn;
}

static int is_float(int32_t d) {
  return d == TRTB_DTYPE_F32 || d == TRTB_DTYPE_F16 || d == TRTB_DTYPE_BF16;
}

int32_t trtb__check_cast(const char *fn, const void *src, uint64_t src_bytes, int32_t src_dtype,
                         const void *dst, uint64_t dst_bytes, int32_t dst_dtype, uint64_t *count,
                         trtb__cast_kind *kind) {
  if (src == NULL && src_bytes != 0)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: src is NULL but src_bytes is %llu", fn, (unsigned long long)src_bytes);
  if (dst == NULL && dst_bytes != 0)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: dst is NULL but dst_bytes is %llu", fn, (unsigned long long)dst_bytes);
  const uint32_t ss = trtb__dtype_size(src_dtype), ds = trtb__dtype_size(dst_dtype);
  if (ss == 0) return trtb__fail(TRTB_ERR_DTYPE, "%s: src_dtype %d is not a trtb_dtype", fn, (int)src_dtype);
  if (ds == 0) return trtb__fail(TRTB_ERR_DTYPE, "%s: dst_dtype %d is not a trtb_dtype", fn, (int)dst_dtype);
  trtb__cast_kind k;
  if (src_dtype == dst_dtype) {
    k = TRTB__CAST_COPY;
  } else if (!is_float(src_dtype) || !is_float(dst_dtype)) {
    return trtb__fail(TRTB_ERR_DTYPE, "%s: cannot convert %s to %s (only F32, F16 and BF16 convert among themselves)",
                      fn, trtb__dtype_name(src_dtype), trtb__dtype_name(dst_dtype));
  } else if (src_dtype == TRTB_DTYPE_F32) {
    k = dst_dtype == TRTB_DTYPE_F16 ? TRTB__CAST_F32_F16 : TRTB__CAST_F32_BF16;
  } else if (src_dtype == TRTB_DTYPE_F16) {
    k = dst_dtype == TRTB_DTYPE_F32 ? TRTB__CAST_F16_F32 : TRTB__CAST_F16_BF16;
  } else {
    k = dst_dtype == TRTB_DTYPE_F32 ? TRTB__CAST_BF16_F32 : TRTB__CAST_BF16_F16;
  }
  if (src_bytes % ss != 0)
    return trtb__fail(TRTB_ERR_SIZE, "%s: src_bytes %llu is not a multiple of the %s element size %u", fn,
                      (unsigned long long)src_bytes, trtb__dtype_name(src_dtype), ss);
  const uint64_t n = src_bytes / ss;
  if (n > UINT64_MAX / ds) /* only reachable when widening more than 2^63 bytes */
    return trtb__fail(TRTB_ERR_SIZE, "%s: %llu elements of %s overflow uint64", fn, (unsigned long long)n,
                      trtb__dtype_name(dst_dtype));
  if (dst_bytes != n * ds)
    return trtb__fail(TRTB_ERR_SIZE, "%s: %llu elements %s -> %s need dst_bytes %llu, got %llu", fn,
                      (unsigned long long)n, trtb__dtype_name(src_dtype), trtb__dtype_name(dst_dtype),
                      (unsigned long long)(n * ds), (unsigned long long)dst_bytes);
  if (n == 0 || (src == dst && k == TRTB__CAST_COPY)) {
    k = TRTB__CAST_NOOP;
  } else if (ranges_overlap(src, src_bytes, dst, dst_bytes)) {
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: src and dst overlap (in-place conversion is not supported)", fn);
  }
  *count = n;
  *kind = k;
  return TRTB_OK;
}

int32_t trtb__check_transpose(const char *fn, const void *src, uint64_t src_bytes, const void *dst,
                              uint64_t dst_bytes, uint64_t rows, uint64_t cols, uint32_t elem_size,
                              uint64_t *total_bytes) {
  if (src == NULL && src_bytes != 0)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: src is NULL but src_bytes is %llu", fn, (unsigned long long)src_bytes);
  if (dst == NULL && dst_bytes != 0)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: dst is NULL but dst_bytes is %llu", fn, (unsigned long long)dst_bytes);
  if (elem_size != 1 && elem_size != 2 && elem_size != 4 && elem_size != 8)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: elem_size must be 1, 2, 4 or 8, got %u", fn, elem_size);
  if (cols != 0 && rows > UINT64_MAX / cols)
    return trtb__fail(TRTB_ERR_SIZE, "%s: %llu x %llu elements overflow uint64", fn, (unsigned long long)rows,
                      (unsigned long long)cols);
  const uint64_t n = rows * cols;
  if (n > UINT64_MAX / elem_size)
    return trtb__fail(TRTB_ERR_SIZE, "%s: %llu x %llu x %u bytes overflow uint64", fn, (unsigned long long)rows,
                      (unsigned long long)cols, elem_size);
  const uint64_t total = n * elem_size;
  if (src_bytes != total || dst_bytes != total)
    return trtb__fail(TRTB_ERR_SIZE, "%s: %llu x %llu x %u bytes = %llu, but src_bytes is %llu and dst_bytes is %llu",
                      fn, (unsigned long long)rows, (unsigned long long)cols, elem_size, (unsigned long long)total,
                      (unsigned long long)src_bytes, (unsigned long long)dst_bytes);
  if (ranges_overlap(src, src_bytes, dst, dst_bytes))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: src and dst overlap (in-place transpose is not supported)", fn);
  *total_bytes = total;
  return TRTB_OK;
}
