/*
 * wo_pack.c: trtb_wo_pack, the build-time layout of weight-only (W8A16 / W4A16) weights for the
 * engine's tensor-core kernel (cshim/engine/kernels/gemm_wo.cu documents the layout; the TypeScript
 * reference is src/engine/wo-layout.ts). Pure data movement: 16-row x k-tile tiles of 512 bytes, each
 * lane's 16 bytes holding its mma.m16n8k16 A fragments (lane t: columns t·KT/4 .. of the tile), values stored offset-binary (q + 128 for
 * int8, q + 8 for int4); padding rows and columns hold q = 0. Split across threads by row tile.
 */
#include <string.h>

#include "internal.h"
#include "parallel.h"

typedef struct {
  const signed char *q;
  unsigned char *dst;
  int64_t rows, cols, ktiles;
  int32_t bits;
} wo_job;

static inline int qat(const wo_job *j, int64_t r, int64_t c) {
  return (r < j->rows && c < j->cols) ? j->q[r * j->cols + c] : 0;
}

static void wo_range(void *ctx, uint64_t begin, uint64_t end) {
  const wo_job *j = (const wo_job *)ctx;
  const int kt_elems = j->bits == 8 ? 32 : 64;
  for (uint64_t rt = begin; rt < end; rt++) {
    for (int64_t kt = 0; kt < j->ktiles; kt++) {
      unsigned char *tile = j->dst + ((int64_t)rt * j->ktiles + kt) * 512;
      for (int lane = 0; lane < 32; lane++) {
        const int g = lane >> 2, t = lane & 3;
        const int64_t r0 = (int64_t)rt * 16 + g, r1 = r0 + 8;
        unsigned char *o = tile + lane * 16;
        for (int s = 0; s < kt_elems / 16; s++) {
          /* columns c0..c3 = k .. k+3; a0 (r0, c0 c1), a1 (r1, c0 c1), a2 (r0, c2 c3), a3 (r1, c2 c3) */
          const int64_t k = kt * kt_elems + t * (kt_elems / 4) + s * 4;
          const int v[8] = {qat(j, r0, k), qat(j, r0, k + 1), qat(j, r1, k), qat(j, r1, k + 1),
                            qat(j, r0, k + 2), qat(j, r0, k + 3), qat(j, r1, k + 2), qat(j, r1, k + 3)};
          if (j->bits == 8) {
            for (int e = 0; e < 8; e++) o[s * 8 + e] = (unsigned char)(v[e] + 128);
          } else {
            uint32_t w = 0;
            for (int p = 0; p < 4; p++) {
              w |= (uint32_t)((v[2 * p] + 8) & 15) << (4 * p);
              w |= (uint32_t)((v[2 * p + 1] + 8) & 15) << (16 + 4 * p);
            }
            o[s * 4 + 0] = (unsigned char)w;
            o[s * 4 + 1] = (unsigned char)(w >> 8);
            o[s * 4 + 2] = (unsigned char)(w >> 16);
            o[s * 4 + 3] = (unsigned char)(w >> 24);
          }
        }
      }
    }
  }
}

TRTB_API int32_t trtb_wo_pack(const void *q, uint64_t q_bytes, int64_t rows, int64_t cols, int32_t bits, void *dst,
                              uint64_t dst_bytes) {
  const char *fn = "trtb_wo_pack";
  if (bits != 8 && bits != 4) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: bits %d (8 or 4)", fn, bits);
  if (rows <= 0 || cols <= 0) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: shape %lld x %lld", fn, (long long)rows, (long long)cols);
  if (!q || !dst) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: NULL buffer", fn);
  const int64_t kt_elems = bits == 8 ? 32 : 64;
  const int64_t rtiles = (rows + 15) / 16, ktiles = (cols + kt_elems - 1) / kt_elems;
  const uint64_t need = (uint64_t)(rtiles * ktiles * 512);
  if (q_bytes != (uint64_t)(rows * cols))
    return trtb__fail(TRTB_ERR_SIZE, "%s: q holds %llu bytes, %lld x %lld needs %lld", fn, (unsigned long long)q_bytes,
                      (long long)rows, (long long)cols, (long long)(rows * cols));
  if (dst_bytes != need)
    return trtb__fail(TRTB_ERR_SIZE, "%s: dst holds %llu bytes, the layout needs %llu", fn, (unsigned long long)dst_bytes,
                      (unsigned long long)need);
  wo_job j = {(const signed char *)q, (unsigned char *)dst, rows, cols, ktiles, bits};
  /* grain: ~256 Ki elements per thread */
  uint64_t grain = (uint64_t)(262144 / (16 * ktiles * kt_elems)) + 1;
  trtb__parallel_for((uint64_t)rtiles, grain, 1, wo_range, &j);
  return TRTB_OK;
}
