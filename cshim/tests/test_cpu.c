/*
 * test_cpu.c: fast native checks of libtrtb (ctest). The exhaustive bit-for-bit comparison with
 * src/numeric.ts lives in test/ffi/; this one checks the ABI contract (status codes, last error)
 * and the branch-free conversions against a straightforward C port of the TypeScript reference.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trtb.h"

static int g_failures;
#define EXPECT(cond)                                                      \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
      g_failures++;                                                       \
    }                                                                     \
  } while (0)

/* ---- reference: a line-by-line port of src/numeric.ts (bits in, bits out) --------------------- */

static uint16_t ref_f32_to_bf16(uint32_t u) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((u >> 16) | 0x40u) & 0xffffu);
  return (uint16_t)(((u + 0x7fffu + ((u >> 16) & 1u)) >> 16) & 0xffffu);
}

static uint16_t ref_f32_to_f16(uint32_t u) {
  uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return (uint16_t)(sign | (a > 0x7f800000u ? 0x7e00u | ((a >> 13) & 0x3ffu) : 0x7c00u));
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
  if (a < 0x38800000u) {
    uint32_t exp = a >> 23;
    if (exp < 102) return (uint16_t)sign;
    uint32_t mant = (a & 0x7fffffu) | 0x800000u, shift = 126 - exp;
    uint32_t m16 = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (m16 & 1u))) m16++;
    return (uint16_t)(sign | m16);
  }
  return (uint16_t)(sign | ((a - (112u << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13));
}

static uint32_t ref_f16_to_f32(uint16_t h) {
  uint32_t sign = ((uint32_t)h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return sign;
    int e = -1; /* normalize the subnormal */
    do { e++; mant <<= 1; } while (!(mant & 0x400u));
    return sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  if (exp == 31) return sign | 0x7f800000u | (mant << 13);
  return sign | ((exp + 112u) << 23) | (mant << 13);
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (uint32_t)(g_rng >> 16);
}

static void test_status_and_last_error(void) {
  EXPECT(trtb_abi_version() == TRTB_ABI_VERSION);
  EXPECT(strstr(trtb_status_str(TRTB_ERR_SIZE), "TRTB_ERR_SIZE") != NULL);
  EXPECT(strcmp(trtb_status_str(12345), "unknown status") == 0);
  EXPECT(trtb_dtype_size(TRTB_DTYPE_BF16) == 2 && trtb_dtype_size(0) == 0 && trtb_dtype_size(99) == 0);

  uint16_t out[4];
  float in[4] = {0};
  EXPECT(trtb_cast(in, 16, 0, out, 8, TRTB_DTYPE_F16) == TRTB_ERR_DTYPE);
  EXPECT(trtb_cast(in, 16, TRTB_DTYPE_F32, out, 8, TRTB_DTYPE_I8) == TRTB_ERR_DTYPE);
  EXPECT(trtb_cast(in, 15, TRTB_DTYPE_F32, out, 8, TRTB_DTYPE_F16) == TRTB_ERR_SIZE);
  EXPECT(trtb_cast(in, 16, TRTB_DTYPE_F32, out, 6, TRTB_DTYPE_F16) == TRTB_ERR_SIZE);
  EXPECT(trtb_cast(NULL, 16, TRTB_DTYPE_F32, out, 8, TRTB_DTYPE_F16) == TRTB_ERR_INVALID_ARG);
  EXPECT(trtb_cast(in, 16, TRTB_DTYPE_F32, (char *)in + 4, 8, TRTB_DTYPE_F16) == TRTB_ERR_INVALID_ARG);
  EXPECT(trtb_cast(NULL, 0, TRTB_DTYPE_F32, NULL, 0, TRTB_DTYPE_F16) == TRTB_OK);
  EXPECT(trtb_cast(in, 16, TRTB_DTYPE_F32, in, 16, TRTB_DTYPE_F32) == TRTB_OK);

  EXPECT(trtb_transpose2d(in, 16, out, 16, 2, 2, 3) == TRTB_ERR_INVALID_ARG);
  EXPECT(trtb_transpose2d(in, 16, out, 8, 2, 2, 4) == TRTB_ERR_SIZE);
  EXPECT(trtb_transpose2d(in, 16, out, 8, UINT64_MAX, 3, 4) == TRTB_ERR_SIZE);

  /* last error: full length returned, truncated copy NUL-terminated, length-only query */
  EXPECT(trtb_cast(in, 16, TRTB_DTYPE_F32, out, 6, TRTB_DTYPE_F16) == TRTB_ERR_SIZE);
  char buf[256];
  int32_t len = trtb_last_error(NULL, 0);
  EXPECT(len > 10);
  EXPECT(trtb_last_error(buf, sizeof buf) == len && (int32_t)strlen(buf) == len);
  EXPECT(strstr(buf, "trtb_cast") != NULL && strstr(buf, "dst_bytes") != NULL);
  char small[8];
  EXPECT(trtb_last_error(small, sizeof small) == len && strlen(small) == 7);
  /* success leaves the last error alone */
  EXPECT(trtb_cast(in, 16, TRTB_DTYPE_F32, out, 8, TRTB_DTYPE_F16) == TRTB_OK);
  EXPECT(trtb_last_error(NULL, 0) == len);
}

static void test_conversions(void) {
  /* all 16-bit patterns, both directions through f32 */
  enum { N16 = 65536 };
  uint16_t *h = malloc(N16 * 2), *h2 = malloc(N16 * 2);
  uint32_t *f = malloc(N16 * 4);
  for (uint32_t i = 0; i < N16; i++) h[i] = (uint16_t)i;
  EXPECT(trtb_cast(h, N16 * 2, TRTB_DTYPE_F16, f, N16 * 4, TRTB_DTYPE_F32) == TRTB_OK);
  int bad = 0;
  for (uint32_t i = 0; i < N16; i++) bad += f[i] != ref_f16_to_f32(h[i]);
  EXPECT(bad == 0);
  EXPECT(trtb_cast(h, N16 * 2, TRTB_DTYPE_F16, h2, N16 * 2, TRTB_DTYPE_BF16) == TRTB_OK);
  bad = 0;
  for (uint32_t i = 0; i < N16; i++) bad += h2[i] != ref_f32_to_bf16(ref_f16_to_f32(h[i]));
  EXPECT(bad == 0);
  EXPECT(trtb_cast(h, N16 * 2, TRTB_DTYPE_BF16, h2, N16 * 2, TRTB_DTYPE_F16) == TRTB_OK);
  bad = 0;
  for (uint32_t i = 0; i < N16; i++) bad += h2[i] != ref_f32_to_f16((uint32_t)h[i] << 16);
  EXPECT(bad == 0);
  free(h), free(h2), free(f);

  /* f32 -> f16 / bf16: every exponent with random mantissas and signs, plus boundaries; 2M values
   * so the threaded path runs too */
  enum { NF = 1 << 21 };
  uint32_t *src = malloc((size_t)NF * 4);
  uint16_t *o16 = malloc((size_t)NF * 2), *ob16 = malloc((size_t)NF * 2);
  static const uint32_t edges[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x007fffffu, 0x00800000u, 0x33000000u,
                                   0x33000001u, 0x337fffffu, 0x33800000u, 0x38800000u, 0x387fffffu, 0x477fe000u,
                                   0x477fefffu, 0x477ff000u, 0x477fffffu, 0x47800000u, 0x7f7fffffu, 0x7f800000u,
                                   0x7f800001u, 0x7fc00000u, 0x7fffffffu, 0xff800000u, 0xffffffffu, 0x3f808000u,
                                   0x3f818000u, 0x3f800fffu, 0x3f801000u, 0x3f803000u};
  const uint32_t n_edges = sizeof edges / sizeof edges[0];
  for (uint32_t i = 0; i < NF; i++) src[i] = i < n_edges ? edges[i] : rnd() ^ ((uint32_t)(i & 0x1ff) << 23);
  EXPECT(trtb_cast(src, (uint64_t)NF * 4, TRTB_DTYPE_F32, o16, (uint64_t)NF * 2, TRTB_DTYPE_F16) == TRTB_OK);
  EXPECT(trtb_cast(src, (uint64_t)NF * 4, TRTB_DTYPE_F32, ob16, (uint64_t)NF * 2, TRTB_DTYPE_BF16) == TRTB_OK);
  int bad16 = 0, badb = 0;
  for (uint32_t i = 0; i < NF; i++) {
    if (o16[i] != ref_f32_to_f16(src[i]) && bad16++ < 5)
      fprintf(stderr, "f32->f16 %08x: got %04x want %04x\n", src[i], o16[i], ref_f32_to_f16(src[i]));
    if (ob16[i] != ref_f32_to_bf16(src[i]) && badb++ < 5)
      fprintf(stderr, "f32->bf16 %08x: got %04x want %04x\n", src[i], ob16[i], ref_f32_to_bf16(src[i]));
  }
  EXPECT(bad16 == 0 && badb == 0);
  free(src), free(o16), free(ob16);
}

static void test_transpose(void) {
  const uint64_t shapes[][2] = {{1, 7}, {7, 1}, {3, 5}, {33, 65}, {64, 64}, {129, 31}, {1000, 1003}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    for (uint32_t es = 1; es <= 8; es *= 2) {
      const uint64_t r = shapes[s][0], c = shapes[s][1], n = r * c * es;
      unsigned char *a = malloc(n + 1), *b = malloc(n + 1);
      for (uint64_t i = 0; i < n; i++) a[i + 1] = (unsigned char)rnd();
      /* +1: unaligned buffers on purpose */
      EXPECT(trtb_transpose2d(a + 1, n, b + 1, n, r, c, es) == TRTB_OK);
      int bad = 0;
      for (uint64_t i = 0; i < r; i++)
        for (uint64_t j = 0; j < c; j++) bad += memcmp(b + 1 + (j * r + i) * es, a + 1 + (i * c + j) * es, es) != 0;
      EXPECT(bad == 0);
      free(a), free(b);
    }
  }
}

int main(void) {
  test_status_and_last_error();
  trtb_set_num_threads(3); /* exercise the threaded split even on a 1-core runner */
  test_conversions();
  test_transpose();
  trtb_set_num_threads(0);
  test_conversions();
  if (g_failures) {
    fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  printf("trtb_test_cpu: ok\n");
  return 0;
}
