/*
 * internal.h: helpers shared by libtrtb, libtrtb_cuda and libtrtb_engine (common.c). Not part of
 * the ABI: everything here has hidden visibility and a `trtb__` (double underscore) prefix. Each
 * library links its own copy, so each has its own thread-local last-error slot.
 */
#ifndef TRTB_INTERNAL_H
#define TRTB_INTERNAL_H

#include <stdint.h>

#include "trtb.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#  define TRTB_HIDDEN __attribute__((visibility("hidden")))
#  define TRTB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define TRTB_HIDDEN
#  define TRTB_PRINTF(a, b)
#endif

/* ---- last error ------------------------------------------------------------------------------ */

/* Record printf-style detail text for the calling thread and return `status` unchanged, so that
 * error paths read `return trtb__fail(TRTB_ERR_SIZE, "...", ...);`. */
TRTB_HIDDEN int32_t trtb__fail(int32_t status, const char *fmt, ...) TRTB_PRINTF(2, 3);

/* Implementation of trtb_last_error / trtb_cuda_last_error. */
TRTB_HIDDEN int32_t trtb__last_error_copy(char *buf, uint64_t buf_len);

/* Implementation of trtb_status_str / trtb_cuda_status_str. */
TRTB_HIDDEN const char *trtb__status_str(int32_t status);

/* ---- dtypes and argument checks ---------------------------------------------------------------- */

/* Element size of a trtb_dtype value, 0 if it is not one. */
TRTB_HIDDEN uint32_t trtb__dtype_size(int32_t dtype);

/* Short name ("F32") of a dtype value, "?" if it is not one. */
TRTB_HIDDEN const char *trtb__dtype_name(int32_t dtype);

/* What a validated cast call has to do. */
typedef enum trtb__cast_kind {
  TRTB__CAST_NOOP = 0,   /* nothing to do (zero elements, or src == dst with the same dtype) */
  TRTB__CAST_COPY,       /* same dtype: byte copy */
  TRTB__CAST_F32_F16,
  TRTB__CAST_F32_BF16,
  TRTB__CAST_F16_F32,
  TRTB__CAST_BF16_F32,
  TRTB__CAST_F16_BF16,
  TRTB__CAST_BF16_F16
} trtb__cast_kind;

/* Check the arguments of a cast call (CPU or CUDA; `fn` names the caller in messages). On
 * success stores the element count and the kind of work. On failure records the last error and
 * returns the status documented for trtb_cast. */
TRTB_HIDDEN int32_t trtb__check_cast(const char *fn, const void *src, uint64_t src_bytes, int32_t src_dtype,
                                     const void *dst, uint64_t dst_bytes, int32_t dst_dtype,
                                     uint64_t *count, trtb__cast_kind *kind);

/* Check the arguments of a transpose call. On success stores the total byte count (0 means
 * nothing to do). */
TRTB_HIDDEN int32_t trtb__check_transpose(const char *fn, const void *src, uint64_t src_bytes, const void *dst,
                                          uint64_t dst_bytes, uint64_t rows, uint64_t cols, uint32_t elem_size,
                                          uint64_t *total_bytes);

#ifdef __cplusplus
}
#endif

#endif /* TRTB_INTERNAL_H */
