/*
 * quant.c: trtb_quantize and trtb_dequantize on the CPU. The rules live in quant.h (shared with the
 * CUDA kernels); this file is the loops and the threading.
 *
 * Work is split over "units": one row, or the two rows that share a byte in INT4_PACKED_ROWS. A unit
 * is processed group by group: the group is widened to f32 once into a stack buffer (two buffers for
 * a row pair), its amax and scale computed, then every element quantized and written. Groups longer
 * than the buffer (per-channel scales over wide rows) are read twice, chunk by chunk.
 *
 * Napkin maths: int4 AWQ reads 2 bytes and writes half a byte per bf16 weight; one core quantizes a
 * few hundred M weights/s with an f32 division each, so 1 GiB of bf16 takes about a second on one
 * thread and scales with the thread count until memory bandwidth runs out.
 */
#include <stddef.h>
#include <string.h>

#include "internal.h"
#include "numeric.h"
#include "parallel.h"
#include "quant.h"

/* src/ffi/symbols.ts (QUANT_PARAMS) writes this layout by offset. */
_Static_assert(sizeof(trtb_quant_params) == TRTB__QUANT_PARAMS_SIZE, "trtb_quant_params layout changed: update QUANT_PARAMS");
_Static_assert(offsetof(trtb_quant_params, rows) == 16 && offsetof(trtb_quant_params, divisor) == 40 &&
                   offsetof(trtb_quant_params, qmin) == 60 && offsetof(trtb_quant_params, flags) == 72,
               "trtb_quant_params layout changed: update QUANT_PARAMS");

/* f32 values held per row while a group is processed (8 KiB per row). */
#define QBUF 2048u
/* Minimum elements per thread before splitting (as for cast). */
#define TRTB__QUANT_GRAIN (256u * 1024u)

typedef struct {
  const trtb_quant_params *p;
  trtb__quant_shape sh;
  const unsigned char *src;
  unsigned char *dst;
  unsigned char *scales;
} q_job;

/* x[0..n) = element [off, off + n) of src as f32, clamped when asked. */
static void load_group(const unsigned char *src, int32_t dtype, uint64_t off, uint64_t n, float *x,
                       const trtb_quant_params *p) {
  if (dtype == TRTB_DTYPE_BF16) {
    for (uint64_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, src + 2 * (off + i), 2);
      x[i] = trtb__bits_f32(trtb__bf16_to_f32(h));
    }
  } else if (dtype == TRTB_DTYPE_F16) {
    for (uint64_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, src + 2 * (off + i), 2);
      x[i] = trtb__bits_f32(trtb__f16_to_f32(h));
    }
  } else {
    memcpy(x, src + 4 * off, (size_t)(4 * n));
  }
  if (p->flags & TRTB_QUANT_CLAMP) {
    const float lo = p->clamp_lo, hi = p->clamp_hi;
    for (uint64_t i = 0; i < n; i++) x[i] = trtb__q_clamp_x(x[i], 1, lo, hi);
  }
}

/* Keys are below 2^31, so a signed max (which SSE2 vectorizes) is the same as the unsigned one. */
static uint32_t amax_key(const float *x, uint64_t n, uint32_t m0) {
  int32_t m = (int32_t)m0;
  for (uint64_t i = 0; i < n; i++) {
    const int32_t k = (int32_t)trtb__q_abs_key(x[i]);
    m = k > m ? k : m;
  }
  return (uint32_t)m;
}

/* amax of one row's group, reading in chunks (groups larger than QBUF). */
static uint32_t amax_streamed(const q_job *j, uint64_t off, uint64_t n, float *buf) {
  uint32_t m = 0;
  for (uint64_t c = 0; c < n; c += QBUF) {
    const uint64_t k = n - c < QBUF ? n - c : QBUF;
    load_group(j->src, j->p->src_dtype, off + c, k, buf, j->p);
    m = amax_key(buf, k, m);
  }
  return m;
}

static void quant_int8(const float *x, uint64_t n, float sq, const trtb_quant_params *p, int8_t *out) {
  const float lo = (float)p->qmin, hi = (float)p->qmax;
  if (p->rounding == TRTB_QROUND_HALF_AWAY)
    for (uint64_t i = 0; i < n; i++) out[i] = (int8_t)trtb__q_int(x[i], sq, lo, hi, TRTB_QROUND_HALF_AWAY);
  else
    for (uint64_t i = 0; i < n; i++) out[i] = (int8_t)trtb__q_int(x[i], sq, lo, hi, TRTB_QROUND_HALF_EVEN);
}

static void quant_int4_pair(const float *x0, const float *x1, uint64_t n, float s0, float s1,
                            const trtb_quant_params *p, unsigned char *out) {
  const float lo = (float)p->qmin, hi = (float)p->qmax;
  const int32_t rnd = p->rounding == TRTB_QROUND_HALF_AWAY ? TRTB_QROUND_HALF_AWAY : TRTB_QROUND_HALF_EVEN;
  for (uint64_t i = 0; i < n; i++) {
    const int32_t a = trtb__q_int(x0[i], s0, lo, hi, rnd);
    const int32_t b = trtb__q_int(x1[i], s1, lo, hi, rnd);
    out[i] = (unsigned char)((a & 0xf) | ((b & 0xf) << 4));
  }
}

static void quant_fp8(const float *x, uint64_t n, float sq, unsigned char *out) {
  for (uint64_t i = 0; i < n; i++) out[i] = trtb__q_fp8(x[i], sq);
}

static void quant_units(void *ctx, uint64_t u0, uint64_t u1) {
  const q_job *j = (const q_job *)ctx;
  const trtb_quant_params *p = j->p;
  const uint64_t cols = j->sh.cols, G = j->sh.group, gpr = j->sh.groups_per_row;
  const int pair = p->format == TRTB_QFORMAT_INT4_PACKED_ROWS;
  const int by_stored = (p->flags & TRTB_QUANT_DIVIDE_BY_STORED) != 0;
  float buf[2][QBUF];
  for (uint64_t u = u0; u < u1; u++) {
    const uint64_t r0 = pair ? 2 * u : u;
    const int nr = pair ? 2 : 1;
    for (uint64_t g = 0; g < gpr; g++) {
      float sq[2];
      const int fits = G <= QBUF;
      for (int k = 0; k < nr; k++) {
        const uint64_t off = (r0 + (uint64_t)k) * cols + g * G;
        uint32_t m;
        if (fits) {
          load_group(j->src, p->src_dtype, off, G, buf[k], p);
          m = amax_key(buf[k], G, 0);
        } else {
          m = amax_streamed(j, off, G, buf[k]);
        }
        uint32_t stored;
        sq[k] = trtb__q_scale(m, p->divisor, p->min_scale, p->zero_scale, p->scale_dtype, by_stored, &stored);
        trtb__q_store_bits(j->scales, (r0 + (uint64_t)k) * gpr + g, p->scale_dtype, stored);
      }
      for (uint64_t c = 0; c < G; c += QBUF) {
        const uint64_t n = fits ? G : (G - c < QBUF ? G - c : QBUF);
        if (!fits)
          for (int k = 0; k < nr; k++) load_group(j->src, p->src_dtype, (r0 + (uint64_t)k) * cols + g * G + c, n, buf[k], p);
        const uint64_t col = g * G + c;
        if (p->format == TRTB_QFORMAT_INT8)
          quant_int8(buf[0], n, sq[0], p, (int8_t *)(j->dst + r0 * cols + col));
        else if (p->format == TRTB_QFORMAT_FP8_E4M3)
          quant_fp8(buf[0], n, sq[0], j->dst + r0 * cols + col);
        else
          quant_int4_pair(buf[0], buf[1], n, sq[0], sq[1], p, j->dst + u * cols + col);
        if (fits) break;
      }
    }
  }
}

TRTB_API int32_t trtb_quantize(const trtb_quant_params *p, const void *src, uint64_t src_bytes, void *dst,
                               uint64_t dst_bytes, void *scales, uint64_t scales_bytes) {
  q_job j;
  int32_t st = trtb__check_quant("trtb_quantize", p, 0, src, src_bytes, dst, dst_bytes, 0, scales, scales_bytes, &j.sh);
  if (st != TRTB_OK) return st;
  if (j.sh.n == 0) return TRTB_OK;
  j.p = p;
  j.src = (const unsigned char *)src;
  j.dst = (unsigned char *)dst;
  j.scales = (unsigned char *)scales;
  const uint64_t units = p->format == TRTB_QFORMAT_INT4_PACKED_ROWS ? j.sh.rows / 2 : j.sh.rows;
  const uint64_t per_unit = j.sh.n / units;
  const uint64_t grain = per_unit >= TRTB__QUANT_GRAIN ? 1 : TRTB__QUANT_GRAIN / per_unit;
  trtb__parallel_for(units, grain, 1, quant_units, &j);
  return TRTB_OK;
}

/* ---- dequantize ------------------------------------------------------------------------------- */

typedef struct {
  const trtb_quant_params *p;
  trtb__quant_shape sh;
  const unsigned char *q;
  const unsigned char *scales;
  unsigned char *dst;
  int32_t dst_dtype;
} dq_job;

static void dequant_rows(void *ctx, uint64_t r0, uint64_t r1) {
  const dq_job *j = (const dq_job *)ctx;
  const trtb_quant_params *p = j->p;
  const uint64_t cols = j->sh.cols, G = j->sh.group, gpr = j->sh.groups_per_row;
  for (uint64_t r = r0; r < r1; r++) {
    for (uint64_t g = 0; g < gpr; g++) {
      const float s = trtb__bits_f32(trtb__q_load_bits(j->scales, r * gpr + g, p->scale_dtype));
      for (uint64_t c = g * G; c < (g + 1) * G; c++) {
        float v;
        if (p->format == TRTB_QFORMAT_INT8) {
          v = (float)(int8_t)j->q[r * cols + c];
        } else if (p->format == TRTB_QFORMAT_INT4_PACKED_ROWS) {
          const unsigned char b = j->q[(r / 2) * cols + c];
          const int32_t nib = (r & 1) ? (b >> 4) : (b & 0xf);
          v = (float)(nib >= 8 ? nib - 16 : nib);
        } else {
          v = trtb__bits_f32(trtb__e4m3_to_f32(j->q[r * cols + c]));
        }
        trtb__q_store_bits(j->dst, r * cols + c, j->dst_dtype, trtb__q_dequant(v, s));
      }
    }
  }
}

TRTB_API int32_t trtb_dequantize(const trtb_quant_params *p, const void *q, uint64_t q_bytes, const void *scales,
                                 uint64_t scales_bytes, void *dst, uint64_t dst_bytes, int32_t dst_dtype) {
  dq_job j;
  int32_t st = trtb__check_quant("trtb_dequantize", p, 1, q, q_bytes, dst, dst_bytes, dst_dtype, scales, scales_bytes, &j.sh);
  if (st != TRTB_OK) return st;
  if (j.sh.n == 0) return TRTB_OK;
  j.p = p;
  j.q = (const unsigned char *)q;
  j.scales = (const unsigned char *)scales;
  j.dst = (unsigned char *)dst;
  j.dst_dtype = dst_dtype;
  const uint64_t grain = j.sh.cols >= TRTB__QUANT_GRAIN ? 1 : TRTB__QUANT_GRAIN / j.sh.cols;
  trtb__parallel_for(j.sh.rows, grain, 1, dequant_rows, &j);
  return TRTB_OK;
}
