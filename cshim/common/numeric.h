/*
 * numeric.h: scalar f32 / f16 / bf16 conversions on bit patterns, shared by the CPU loops
 * (cpu/cast.c) and the CUDA kernels (cuda/cast.cu), so both give the same bits. This is the
 * bit-level twin of src/numeric.ts; see trtb_cast in trtb.h for the rules.
 *
 * Written to be branch-free (every case is computed, then selected) so that compilers vectorize
 * the CPU loops. Only the f16 subnormal case uses floating point: adding 0.5f lines the f32 ulp up
 * with the f16 subnormal step (2^-24), and the FPU rounds to nearest even for us. That needs the
 * default rounding mode and no -ffast-math. Flush-to-zero or denormals-are-zero do not change the
 * result: the sum is a normal number, and an f32 subnormal input becomes +-0 in f16 either way.
 */
#ifndef TRTB_NUMERIC_H
#define TRTB_NUMERIC_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#  define TRTB_HD static __host__ __device__ __forceinline__
#else
#  define TRTB_HD static inline
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#  error "trtb assumes a little-endian host (safetensors data is little-endian)"
#endif

TRTB_HD float trtb__bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
#endif
}

TRTB_HD uint32_t trtb__f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
#endif
}

/* f32 -> bf16, round to nearest even; NaN: sign and top payload kept, quiet bit set. */
TRTB_HD uint16_t trtb__f32_to_bf16(uint32_t u) {
  uint32_t rne = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16; /* no wrap: largest non-NaN is 0xff800000 */
  uint32_t nan = (u >> 16) | 0x0040u;
  return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rne);
}

/* f32 -> f16, round to nearest even, subnormals exact, >= 65520 in magnitude becomes inf;
 * NaN: sign | 0x7e00 | top 10 payload bits. */
TRTB_HD uint16_t trtb__f32_to_f16(uint32_t u) {
  const uint32_t sign = (u >> 16) & 0x8000u;
  const int32_t a = (int32_t)(u & 0x7fffffffu); /* signed compares vectorize better on SSE2 */
  /* normal: rebias the exponent 127 -> 15, round the 13 dropped bits to nearest even; values
   * just under 65520 carry into the exponent and land on inf (0x7c00) by themselves. */
  const uint32_t normal = ((uint32_t)a - (112u << 23) + 0xfffu + (((uint32_t)a >> 13) & 1u)) >> 13;
  /* subnormal (|x| < 2^-14): x + 0.5 has an ulp of 2^-24, the f16 subnormal step */
#if defined(__CUDA_ARCH__)
  const float sum = __fadd_rn(trtb__bits_f32((uint32_t)a), 0.5f);
#else
  const float sum = trtb__bits_f32((uint32_t)a) + 0.5f;
#endif
  const uint32_t sub = trtb__f32_bits(sum) - 0x3f000000u;
  const uint32_t naninf = a > 0x7f800000 ? (0x7e00u | (((uint32_t)a >> 13) & 0x3ffu)) : 0x7c00u;
  uint32_t r = a < 0x38800000 ? sub : normal;
  r = a >= 0x477ff000 ? 0x7c00u : r; /* >= 65520 rounds to inf (the normal formula agrees) */
  r = a >= 0x7f800000 ? naninf : r;
  return (uint16_t)(sign | r);
}

/* f16 -> f32, exact; NaN payload kept as it is (mantissa << 13). */
TRTB_HD uint32_t trtb__f16_to_f32(uint16_t h) {
  const uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
  const uint32_t exp = ((uint32_t)h >> 10) & 0x1fu;
  const uint32_t mant = (uint32_t)h & 0x3ffu;
  /* subnormal (and zero): mant * 2^-24, exact in f32 */
#if defined(__CUDA_ARCH__)
  const uint32_t sub = trtb__f32_bits(__fmul_rn((float)mant, 5.9604644775390625e-8f));
#else
  const uint32_t sub = trtb__f32_bits((float)mant * 5.9604644775390625e-8f);
#endif
  const uint32_t normal = ((exp + 112u) << 23) | (mant << 13);
  const uint32_t naninf = 0x7f800000u | (mant << 13);
  const uint32_t r = exp == 0 ? sub : (exp == 31 ? naninf : normal);
  return sign | r;
}

/* bf16 -> f32, exact. */
TRTB_HD uint32_t trtb__bf16_to_f32(uint16_t h) { return (uint32_t)h << 16; }

#endif /* TRTB_NUMERIC_H */
