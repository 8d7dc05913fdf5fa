/*
 * quant.h: the scalar rules of trtb_quantize / trtb_dequantize, shared by the CPU loops (cpu/quant.c) and
 * the CUDA kernels (cuda/quant.cu) so both give the same bits, plus the argument check both
 * libraries run. Private: everything here is static inline or hidden. The bit-level twin in
 * TypeScript is src/quant/kernel.ts.
 *
 * One quantization group is `group_size` consecutive columns of one row (rows are output channels):
 *
 *   x      = w as f32, clamped to [clamp_lo, clamp_hi] when TRTB_QUANT_CLAMP is set
 *   amax   = max |x| over the group; NaN never wins (compared as bit patterns with NaN mapped to 0)
 *   s      = amax / divisor                        (f32 division, round to nearest even)
 *   s      = s < min_scale ? min_scale : s
 *   s      = s == 0 ? zero_scale : s
 *   stored = s rounded to scale_dtype (RNE), which is what the scales buffer receives
 *   sq     = TRTB_QUANT_DIVIDE_BY_STORED ? stored (widened back to f32) : s
 *   integer formats: y = x / sq; NaN or sq == 0 gives 0; y clamped to [qmin, qmax]; q = round(y)
 *                    with round = nearest-even or half-away-from-zero (clamping first gives the
 *                    same result as rounding first, since the bounds are integers)
 *   fp8 e4m3:        y = x / sq (0 when sq == 0), clamped to [-448, 448] (NaN stays NaN), then
 *                    converted to e4m3 "fn" (no inf) rounding to nearest even; NaN is always 0x7f
 *
 * Dequantization: w = f32(q) * f32(stored) (one rounding; NaN results canonical 0x7fc00000), then
 * narrowed to the output dtype.
 *
 * Every step is a single IEEE operation in round-to-nearest-even (no FMA contraction is possible:
 * there is never a multiply feeding an add), so the CPU, the GPU (explicit __f*_rn intrinsics) and
 * JavaScript (Math.fround after a double operation, exact for +, -, *, / on f32 operands) agree.
 */
#ifndef TRTB_QUANT_H
#define TRTB_QUANT_H

#include <stdint.h>

#include "internal.h"
#include "numeric.h"

#if defined(__CUDA_ARCH__)
#  define TRTB__FADD(a, b) __fadd_rn((a), (b))
#  define TRTB__FSUB(a, b) __fsub_rn((a), (b))
#  define TRTB__FMUL(a, b) __fmul_rn((a), (b))
#  define TRTB__FDIV(a, b) __fdiv_rn((a), (b))
#else
#  define TRTB__FADD(a, b) ((a) + (b))
#  define TRTB__FSUB(a, b) ((a) - (b))
#  define TRTB__FMUL(a, b) ((a) * (b))
#  define TRTB__FDIV(a, b) ((a) / (b))
#endif

/* Size of the params struct this library was built with (x86-64 and aarch64 Linux). */
#define TRTB__QUANT_PARAMS_SIZE 80u

/* ---- element loads --------------------------------------------------------------------------- */

/* Element i of a buffer of dtype F32 / F16 / BF16, as f32 bits. */
TRTB_HD uint32_t trtb__q_load_bits(const unsigned char *p, uint64_t i, int32_t dtype) {
  if (dtype == TRTB_DTYPE_F32) {
    uint32_t u;
    memcpy(&u, p + 4 * i, 4);
    return u;
  }
  uint16_t h;
  memcpy(&h, p + 2 * i, 2);
  return dtype == TRTB_DTYPE_F16 ? trtb__f16_to_f32(h) : trtb__bf16_to_f32(h);
}

/* f32 bits narrowed to dtype (RNE), widened back: the value a tensor of that dtype would hold. */
TRTB_HD uint32_t trtb__q_round_to(uint32_t u, int32_t dtype) {
  if (dtype == TRTB_DTYPE_F16) return trtb__f16_to_f32(trtb__f32_to_f16(u));
  if (dtype == TRTB_DTYPE_BF16) return trtb__bf16_to_f32(trtb__f32_to_bf16(u));
  return u;
}

/* Store f32 bits as element i of a dtype buffer. */
TRTB_HD void trtb__q_store_bits(unsigned char *p, uint64_t i, int32_t dtype, uint32_t u) {
  if (dtype == TRTB_DTYPE_F32) {
    memcpy(p + 4 * i, &u, 4);
  } else {
    uint16_t h = dtype == TRTB_DTYPE_F16 ? trtb__f32_to_f16(u) : trtb__f32_to_bf16(u);
    memcpy(p + 2 * i, &h, 2);
  }
}

/* ---- the pieces of one group ----------------------------------------------------------------- */

/* Clamp when asked; NaN passes through (every comparison with it is false). */
TRTB_HD float trtb__q_clamp_x(float x, int clamp, float lo, float hi) {
  if (!clamp) return x;
  return x < lo ? lo : (x > hi ? hi : x);
}

/* |x| as an amax candidate: its bit pattern, NaN mapped to 0. For non-negative floats the bit
 * patterns order like the values, so a max over these is an integer max (vectorizes, and the
 * GPU reduces it with __reduce_max_sync). */
TRTB_HD uint32_t trtb__q_abs_key(float x) {
  const uint32_t a = trtb__f32_bits(x) & 0x7fffffffu;
  return a > 0x7f800000u ? 0u : a;
}

/* The group's scale from its amax: returns the value to divide by; *stored_bits receives the f32
 * bits of the scale as stored (rounded to scale_dtype). */
TRTB_HD float trtb__q_scale(uint32_t amax_bits, float divisor, float min_scale, float zero_scale,
                            int32_t scale_dtype, int by_stored, uint32_t *stored_bits) {
  float s = TRTB__FDIV(trtb__bits_f32(amax_bits), divisor);
  s = s < min_scale ? min_scale : s;
  s = s == 0.0f ? zero_scale : s;
  const uint32_t st = trtb__q_round_to(trtb__f32_bits(s), scale_dtype);
  *stored_bits = st;
  return by_stored ? trtb__bits_f32(st) : s;
}

/* Round to an integer: nearest even (1.5 * 2^23 trick, exact for |y| < 2^22) or half away from
 * zero. Callers have clamped y to at most 128 in magnitude. */
TRTB_HD float trtb__q_round(float y, int32_t rounding) {
  const float magic = 12582912.0f; /* 1.5 * 2^23 */
  float r = TRTB__FSUB(TRTB__FADD(y, magic), magic);
  if (rounding == 2 /* TRTB_QROUND_HALF_AWAY */) {
    const float d = TRTB__FSUB(y, r); /* exact */
    const float away = TRTB__FADD(y, y < 0.0f ? -0.5f : 0.5f);
    r = (d == 0.5f || d == -0.5f) ? away : r;
  }
  return r;
}

/* Integer quantization of one element: see the header comment. Branch-free (the division always
 * runs; x / 0 and NaN are selected away afterwards) so the CPU loops vectorize. */
TRTB_HD int32_t trtb__q_int(float x, float sq, float qmin, float qmax, int32_t rounding) {
  float y = TRTB__FDIV(x, sq);
  y = y < qmin ? qmin : (y > qmax ? qmax : y); /* NaN stays NaN */
  y = (y != y || sq == 0.0f) ? 0.0f : y;
  return (int32_t)trtb__q_round(y, rounding);
}

/* f32 bits -> e4m3fn byte, round to nearest even, saturating at +-448, NaN -> 0x7f whatever its sign
 * (CPUs and GPUs give NaNs of different signs for inf / inf; one canonical code keeps them equal). */
TRTB_HD uint8_t trtb__f32_to_e4m3(uint32_t u) {
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7fffffffu;
  /* normal (|x| >= 2^-6): rebias 127 -> 7 and round the 20 dropped mantissa bits to nearest even */
  const uint32_t normal = (a - (120u << 23) + 0x7ffffu + ((a >> 20) & 1u)) >> 20;
  /* subnormal: x + 2^14 has an ulp of 2^-9, the e4m3 subnormal step; the FPU rounds for us */
  const uint32_t sub = trtb__f32_bits(TRTB__FADD(trtb__bits_f32(a), 16384.0f)) - 0x46800000u;
  uint32_t r = a < 0x3c800000u ? sub : normal; /* 2^-6 */
  r = a >= 0x43e00000u ? 0x7eu : r;            /* >= 448 saturates */
  r = sign | r;
  r = a > 0x7f800000u ? 0x7fu : r;             /* NaN */
  return (uint8_t)r;
}

/* e4m3fn byte -> f32 bits, exact. */
TRTB_HD uint32_t trtb__e4m3_to_f32(uint8_t b) {
  const uint32_t sign = ((uint32_t)b & 0x80u) << 24;
  const uint32_t exp = ((uint32_t)b >> 3) & 0xfu;
  const uint32_t man = (uint32_t)b & 7u;
  const uint32_t sub = trtb__f32_bits(TRTB__FMUL((float)man, 0.001953125f)); /* man * 2^-9 */
  const uint32_t normal = ((exp + 120u) << 23) | (man << 20);
  uint32_t r = exp == 0 ? sub : normal;
  r = (exp == 15u && man == 7u) ? 0x7fc00000u : r;
  return sign | r;
}

/* fp8 quantization of one element (branch-free, as trtb__q_int). */
TRTB_HD uint8_t trtb__q_fp8(float x, float sq) {
  float y = TRTB__FDIV(x, sq);
  y = sq == 0.0f ? 0.0f : y;
  y = y < -448.0f ? -448.0f : (y > 448.0f ? 448.0f : y);
  return trtb__f32_to_e4m3(trtb__f32_bits(y));
}

/* Dequantized value: f32(q) * scale, one rounding; any NaN becomes the positive quiet NaN
 * 0x7fc00000 (CPUs and GPUs produce different NaN bits for 0 * inf). */
TRTB_HD uint32_t trtb__q_dequant(float v, float s) {
  const uint32_t r = trtb__f32_bits(TRTB__FMUL(v, s));
  return (r & 0x7fffffffu) > 0x7f800000u ? 0x7fc00000u : r;
}

/* ---- argument check (both libraries) ----------------------------------------------------------- */

/* The validated shape of a quantize / dequantize call. */
typedef struct trtb__quant_shape {
  uint64_t rows, cols, group;
  uint64_t groups_per_row;
  uint64_t n;             /* rows * cols */
  uint64_t q_bytes;       /* bytes of the quantized buffer */
  uint64_t scale_count;   /* rows * groups_per_row */
  uint32_t src_size, scale_size;
} trtb__quant_shape;

static inline int trtb__q_is_float(int32_t d) {
  return d == TRTB_DTYPE_F32 || d == TRTB_DTYPE_F16 || d == TRTB_DTYPE_BF16;
}

static inline int trtb__q_overlap(const void *a, uint64_t an, const void *b, uint64_t bn) {
  if (an == 0 || bn == 0) return 0;
  uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b;
  return pa < pb ? pb - pa < an : pa - pb < bn;
}

static inline int trtb__q_finite(float f) { return f == f && f - f == 0.0f; }

/* Check the params and buffer sizes of trtb_quantize (dequant = 0: a = source, b = quantized) or
 * trtb_dequantize (dequant = 1: a = quantized, b = output of dtype out_dtype). Records the last
 * error and returns the status documented in trtb.h on failure. Host code, used by both libraries. */
static inline int32_t trtb__check_quant(const char *fn, const trtb_quant_params *p, int dequant, const void *a,
                                        uint64_t a_bytes, const void *b, uint64_t b_bytes, int32_t out_dtype,
                                        const void *scales, uint64_t scales_bytes, trtb__quant_shape *sh) {
  if (p == NULL) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: params is NULL", fn);
  if (p->struct_size < TRTB__QUANT_PARAMS_SIZE)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: params struct_size %u is smaller than this library's %u", fn,
                      p->struct_size, TRTB__QUANT_PARAMS_SIZE);
  if (a == NULL && a_bytes != 0) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: input is NULL with %llu bytes", fn, (unsigned long long)a_bytes);
  if (b == NULL && b_bytes != 0) return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: output is NULL with %llu bytes", fn, (unsigned long long)b_bytes);
  if (scales == NULL && scales_bytes != 0)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: scales is NULL with %llu bytes", fn, (unsigned long long)scales_bytes);
  const int32_t fmt = p->format;
  if (fmt != TRTB_QFORMAT_INT8 && fmt != TRTB_QFORMAT_INT4_PACKED_ROWS && fmt != TRTB_QFORMAT_FP8_E4M3)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: format %d is not a trtb_qformat", fn, (int)fmt);
  if (!dequant && !trtb__q_is_float(p->src_dtype))
    return trtb__fail(TRTB_ERR_DTYPE, "%s: src_dtype %s is not F32, F16 or BF16", fn, trtb__dtype_name(p->src_dtype));
  if (dequant && !trtb__q_is_float(out_dtype))
    return trtb__fail(TRTB_ERR_DTYPE, "%s: dst_dtype %s is not F32, F16 or BF16", fn, trtb__dtype_name(out_dtype));
  if (!trtb__q_is_float(p->scale_dtype))
    return trtb__fail(TRTB_ERR_DTYPE, "%s: scale_dtype %s is not F32, F16 or BF16", fn, trtb__dtype_name(p->scale_dtype));
  const uint64_t rows = p->rows, cols = p->cols, group = p->group_size;
  if (group == 0 || (cols != 0 && cols % group != 0))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: group_size %llu does not divide cols %llu", fn, (unsigned long long)group,
                      (unsigned long long)cols);
  if (fmt == TRTB_QFORMAT_INT4_PACKED_ROWS && rows % 2 != 0)
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: INT4_PACKED_ROWS needs an even number of rows, got %llu", fn,
                      (unsigned long long)rows);
  if (!dequant) {
    if (!(p->divisor > 0.0f) || !trtb__q_finite(p->divisor))
      return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: divisor must be finite and > 0", fn);
    if (!(p->min_scale >= 0.0f) || !trtb__q_finite(p->min_scale) || !(p->zero_scale >= 0.0f) || !trtb__q_finite(p->zero_scale))
      return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: min_scale and zero_scale must be finite and >= 0", fn);
    if ((p->flags & TRTB_QUANT_CLAMP) && !(p->clamp_lo < p->clamp_hi))
      return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: clamp_lo must be below clamp_hi", fn);
    if (p->flags & ~(uint32_t)(TRTB_QUANT_CLAMP | TRTB_QUANT_DIVIDE_BY_STORED))
      return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: unknown flags 0x%x", fn, (unsigned)p->flags);
    if (fmt != TRTB_QFORMAT_FP8_E4M3) {
      const int32_t lo = fmt == TRTB_QFORMAT_INT8 ? -128 : -8, hi = fmt == TRTB_QFORMAT_INT8 ? 127 : 7;
      if (p->qmin < lo || p->qmax > hi || p->qmin >= p->qmax)
        return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: [qmin, qmax] = [%d, %d] is not inside [%d, %d]", fn, (int)p->qmin,
                          (int)p->qmax, (int)lo, (int)hi);
      if (p->rounding != TRTB_QROUND_HALF_EVEN && p->rounding != TRTB_QROUND_HALF_AWAY)
        return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: rounding %d is not a trtb_qround", fn, (int)p->rounding);
    }
  }
  if (cols != 0 && rows > UINT64_MAX / 8 / cols)
    return trtb__fail(TRTB_ERR_SIZE, "%s: %llu x %llu elements overflow", fn, (unsigned long long)rows, (unsigned long long)cols);
  const uint64_t n = rows * cols;
  const uint32_t esize = trtb__dtype_size(dequant ? out_dtype : p->src_dtype);
  const uint64_t fp_bytes = n * esize;
  const uint64_t q_bytes = fmt == TRTB_QFORMAT_INT4_PACKED_ROWS ? n / 2 : n;
  const uint64_t gpr = cols == 0 ? 0 : cols / group;
  const uint64_t scale_count = rows * gpr;
  const uint32_t ssize = trtb__dtype_size(p->scale_dtype);
  const uint64_t want_a = dequant ? q_bytes : fp_bytes, want_b = dequant ? fp_bytes : q_bytes;
  if (a_bytes != want_a || b_bytes != want_b || scales_bytes != scale_count * ssize)
    return trtb__fail(TRTB_ERR_SIZE,
                      "%s: a %llu x %llu matrix needs %s %llu bytes, %s %llu bytes and scales %llu bytes; got %llu, %llu and %llu",
                      fn, (unsigned long long)rows, (unsigned long long)cols, dequant ? "q" : "src",
                      (unsigned long long)want_a, dequant ? "dst" : "dst", (unsigned long long)want_b,
                      (unsigned long long)(scale_count * ssize), (unsigned long long)a_bytes,
                      (unsigned long long)b_bytes, (unsigned long long)scales_bytes);
  if (trtb__q_overlap(a, a_bytes, b, b_bytes) || trtb__q_overlap(a, a_bytes, scales, scales_bytes) ||
      trtb__q_overlap(b, b_bytes, scales, scales_bytes))
    return trtb__fail(TRTB_ERR_INVALID_ARG, "%s: buffers overlap", fn);
  sh->rows = rows;
  sh->cols = cols;
  sh->group = group;
  sh->groups_per_row = gpr;
  sh->n = n;
  sh->q_bytes = q_bytes;
  sh->scale_count = scale_count;
  sh->src_size = esize;
  sh->scale_size = ssize;
  return TRTB_OK;
}

#endif /* TRTB_QUANT_H */
