/* rows.cuh: launchers of TRTB_OP_GATHER_ROWS and TRTB_OP_SCATTER_ADD (rows.cu). */
#pragma once

#include "../internal.cuh"

/* dst[r] = src[idx[r]], rows of row_bytes bytes. */
int32_t trtbe_gather_rows(cudaStream_t s, const void *src, void *dst, const int32_t *idx, int64_t R, int64_t row_bytes);
/* out[idx[r]] += w[r] * y[r], rows of H floats. */
int32_t trtbe_scatter_add(cudaStream_t s, const float *y, float *out, const int32_t *idx, const float *w, int64_t R, int64_t H);
