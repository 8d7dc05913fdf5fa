/*
 * transpose.c: trtb_transpose2d. dst (cols x rows) = transpose of src (rows x cols), row-major.
 *
 * Cache blocking: TILE x TILE tiles (32 x 32 x 8 bytes = 8 KiB at most) so that both the strided
 * reads and the strided writes of one tile stay in L1. Threads split the longer tile dimension.
 */
#include <string.h>

#include "internal.h"
#include "parallel.h"

#define TILE 32u
/* Split across threads only when there are at least this many tiles per thread (4 MiB at 4 bytes
 * per element). */
#define TRTB__TRANSPOSE_GRAIN_BYTES (4u << 20)

typedef struct {
  const unsigned char *src;
  unsigned char *dst;
  uint64_t rows, cols;
  uint32_t elem;
  int split_rows; /* 1: the parallel range is over row tiles, 0: over column tiles */
} tr_job;

/* One kernel per element size, so the copy is a single load and store of a known width.
 * Inside a tile, 8 x 8 micro-blocks go through a local array: 8 contiguous loads from each of 8
 * src rows, then 8 contiguous stores to each of 8 dst rows. Only 8 cache lines per side are live
 * at a time, which keeps power-of-two strides (4096 x 4 bytes) from thrashing one L1 set. */
#define MB 8u
#define TRTB__DEFINE_TRANSPOSE(NAME, T)                                                                   \
  static void NAME(const tr_job *j, uint64_t r0, uint64_t r1, uint64_t c0, uint64_t c1) {                \
    const uint64_t rows = j->rows, cols = j->cols;                                                         \
    const unsigned char *src = j->src;                                                                     \
    unsigned char *dst = j->dst;                                                                           \
    for (uint64_t rb = r0; rb < r1; rb += TILE) {                                                          \
      const uint64_t re = rb + TILE < r1 ? rb + TILE : r1;                                                 \
      for (uint64_t cb = c0; cb < c1; cb += TILE) {                                                        \
        const uint64_t ce = cb + TILE < c1 ? cb + TILE : c1;                                               \
        for (uint64_t r = rb; r < re; r += MB) {                                                           \
          for (uint64_t c = cb; c < ce; c += MB) {                                                         \
            if (r + MB <= re && c + MB <= ce) {                                                            \
              T blk[MB][MB];                                                                               \
              for (unsigned i = 0; i < MB; i++)                                                            \
                memcpy(blk[i], src + ((r + i) * cols + c) * sizeof(T), MB * sizeof(T));                    \
              for (unsigned k = 0; k < MB; k++) {                                                          \
                T col[MB];                                                                                 \
                for (unsigned i = 0; i < MB; i++) col[i] = blk[i][k];                                      \
                memcpy(dst + ((c + k) * rows + r) * sizeof(T), col, MB * sizeof(T));                       \
              }                                                                                            \
            } else { /* ragged edge */                                                                     \
              const uint64_t ee = r + MB < re ? r + MB : re, fe = c + MB < ce ? c + MB : ce;               \
              for (uint64_t cc = c; cc < fe; cc++)                                                         \
                for (uint64_t rr = r; rr < ee; rr++)                                                       \
                  memcpy(dst + (cc * rows + rr) * sizeof(T), src + (rr * cols + cc) * sizeof(T), sizeof(T)); \
            }                                                                                              \
          }                                                                                                \
        }                                                                                                  \
      }                                                                                                    \
    }                                                                                                      \
  }

TRTB__DEFINE_TRANSPOSE(tr_1, uint8_t)
TRTB__DEFINE_TRANSPOSE(tr_2, uint16_t)
TRTB__DEFINE_TRANSPOSE(tr_4, uint32_t)
TRTB__DEFINE_TRANSPOSE(tr_8, uint64_t)

static void tr_block(const tr_job *j, uint64_t r0, uint64_t r1, uint64_t c0, uint64_t c1) {
  switch (j->elem) {
    case 1: tr_1(j, r0, r1, c0, c1); break;
    case 2: tr_2(j, r0, r1, c0, c1); break;
    case 4: tr_4(j, r0, r1, c0, c1); break;
    default: tr_8(j, r0, r1, c0, c1); break;
  }
}

/* Parallel range callback: [b, e) are tile indices along the split dimension. */
static void tr_range(void *p, uint64_t b, uint64_t e) {
  const tr_job *j = (const tr_job *)p;
  if (j->split_rows) {
    uint64_t r1 = e * TILE < j->rows ? e * TILE : j->rows;
    tr_block(j, b * TILE, r1, 0, j->cols);
  } else {
    uint64_t c1 = e * TILE < j->cols ? e * TILE : j->cols;
    tr_block(j, 0, j->rows, b * TILE, c1);
  }
}

TRTB_API int32_t trtb_transpose2d(const void *src, uint64_t src_bytes, void *dst, uint64_t dst_bytes, uint64_t rows,
                                  uint64_t cols, uint32_t elem_size) {
  uint64_t total;
  int32_t st = trtb__check_transpose("trtb_transpose2d", src, src_bytes, dst, dst_bytes, rows, cols, elem_size,
                                     &total);
  if (st != TRTB_OK) return st;
  if (total == 0) return TRTB_OK;
  if (rows == 1 || cols == 1) { /* a vector: its transpose has the same bytes */
    memcpy(dst, src, (size_t)total);
    return TRTB_OK;
  }
  const uint64_t row_tiles = (rows + TILE - 1) / TILE, col_tiles = (cols + TILE - 1) / TILE;
  tr_job job = {(const unsigned char *)src, (unsigned char *)dst, rows, cols, elem_size, row_tiles >= col_tiles};
  const uint64_t tiles = job.split_rows ? row_tiles : col_tiles;
  /* bytes moved per tile index along the split dimension */
  const uint64_t bytes_per_tile = total / tiles;
  uint64_t grain = bytes_per_tile ? TRTB__TRANSPOSE_GRAIN_BYTES / bytes_per_tile : tiles;
  if (grain == 0) grain = 1;
  trtb__parallel_for(tiles, grain, 1, tr_range, &job);
  return TRTB_OK;
}
