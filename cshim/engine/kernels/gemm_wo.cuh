/* gemm_wo.cuh: the weight-only GEMM kernel and its helpers (gemm_wo.cu). */
#pragma once

#include "../internal.cuh"

/* Weight-only GEMM (gemm_wo.cu) for M <= 64: y = (x . q^T) * scale, q in the tiled layout of
 * bits 8/4; x (and xlo, the low half on the exact path, or NULL) in a_dtype; y F32 or a_dtype;
 * rt = row tiles per block (1, 2, 4; lowered to what M allows), plus TRTBE_WO_PREFETCH to fetch
 * activations a stage ahead (M <= 8 only). With gs (int4 only; scale unused): group-wise scales
 * gs (a_dtype, [row tile][K / group][8][2]: rows g, g + 8 side by side) over groups of `group` columns. */
#define TRTBE_WO_PREFETCH 8
int32_t trtbe_wo_gemm(cudaStream_t s, const void *w, const float *scale, const void *gs, int32_t group, const void *x,
                      const void *xlo, void *y, int32_t M, int32_t N, int32_t K, int32_t bits, int32_t a_dtype, int32_t y_dtype,
                      int64_t ldx, int64_t ldy, int32_t rt);
/* log2 of the k tiles per group (0 for group 0), or -1 when the kernel cannot take the group size. */
int32_t trtbe_wo_gshift(int32_t group, int32_t bits);
/* Largest rt trtbe_wo_gemm takes for M rows (0: M > 64). */
int trtbe_wo_max_rt(int32_t m);
/* K padded to the k tile of the layout (32 int8, 64 int4 values). */
int32_t trtbe_wo_kp(int32_t k, int32_t bits);
/* Tiled weights to row-major a_dtype [N, K]: q * scale (scaled != 0) or q; with gs, q * gs[n, group]. */
int32_t trtbe_wo_dequant(cudaStream_t s, const void *w, const float *scale, const void *gs, int32_t group, void *out,
                         int32_t N, int32_t K, int32_t bits, int32_t a_dtype, int32_t scaled);
/* y[m, n] *= scale[n] (f32). */
int32_t trtbe_scale_cols(cudaStream_t s, float *y, const float *scale, int32_t M, int32_t N, int64_t ldy);
